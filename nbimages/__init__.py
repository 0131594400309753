"""nbimages: container images in Jupyter notebooks.

Build images from cells without Docker, look inside any image as pandas DataFrames, pull,
run, push and save from the notebook. `%load_ext nbimages` loads the `%image` magics.

The public API is imported lazily so that `import nbimages` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"; each module is imported on first use.
_EXPORTS = {
    "Image": "nbimages.image:Image",
    "Layer": "nbimages.image:Layer",
    "Store": "nbimages.store:Store",
    "open_image": "nbimages.sources:open_image",
    "save": "nbimages.sources:save",
    "load_into_engine": "nbimages.sources:load_into_engine",
    "inspect": "nbimages.analysis:inspect",
    "Inspection": "nbimages.analysis:Inspection",
    "Reference": "nbimages.reference:Reference",
    "pull": "nbimages.registry:pull",
    "push": "nbimages.registry:push",
    "copy": "nbimages.registry:copy",
    "search": "nbimages.registry:search",
    "tags": "nbimages.registry:tags",
    "catalog": "nbimages.registry:catalog",
    "open_remote": "nbimages.registry:open_remote",
    "push_index": "nbimages.registry:push_index",
    "Recipe": "nbimages.build:Recipe",
    "build": "nbimages.build:build",
    "engine": "nbimages.engines:engine",
    "run": "nbimages.engines:run",
    "images": "nbimages.engines:images",
    "ps": "nbimages.engines:ps",
    "stop": "nbimages.engines:stop",
    "logs": "nbimages.engines:logs",
    "explore": "nbimages.notebook.explorer:explore",
    "freeze": "nbimages.build.freeze:freeze",
    "build_notebook": "nbimages.build.notebook_recipe:build_notebook",
    "verify": "nbimages.build.verify:verify",
    "handout": "nbimages.build.handout:handout",
    "execute": "nbimages.execution:execute",
    "verify_outputs": "nbimages.execution:verify_outputs",
}
# public submodules, imported on first use: nbimages.kernel.install(...)
_SUBMODULES = ("kernel",)

__all__ = sorted(_EXPORTS) + list(_SUBMODULES) + ["errors", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"nbimages.{name}")
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'nbimages' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def load_ipython_extension(ipython) -> None:
    """`%load_ext nbimages`: register the %image / %%image magics."""
    from .notebook.magics import load_ipython_extension as _load
    _load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .notebook.magics import unload_ipython_extension as _unload
    _unload(ipython)
