"""nbimages: container images in Jupyter notebooks.

Build images from cells without Docker, look inside any image as pandas DataFrames, pull,
run, push and save from the notebook. `%load_ext nbimages` loads the `%image` magics.

The public API is imported lazily so that `import nbimages` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import verbs as _verbs

__version__ = "0.1.0"

# public name -> "module:attribute"; each module is imported on first use.
_EXPORTS = {
    "Image": "nbimages.image:Image",
    "Layer": "nbimages.image:Layer",
    "validate_image": "nbimages.validate:validate_image",
    "Store": "nbimages.store:Store",
    "open_image": "nbimages.sources:open_image",
    "save": "nbimages.sources:save",
    "load_into_engine": "nbimages.sources:load_into_engine",
    "inspect": "nbimages.analysis:inspect",
    "Inspection": "nbimages.analysis:Inspection",
    "Reference": "nbimages.reference:Reference",
    "pull": "nbimages.sources.remote:pull",
    "push": "nbimages.sources.copy:push",
    "copy": "nbimages.sources.copy:copy",
    "search": "nbimages.registry:search",
    "tags": "nbimages.registry:tags",
    "catalog": "nbimages.registry:catalog",
    "open_remote": "nbimages.sources.remote:open_remote",
    "push_index": "nbimages.sources.remote:push_index",
    "Recipe": "nbimages.builder:Recipe",
    "build": "nbimages.builder:build",
    "engine": "nbimages.engines:engine",
    "run": "nbimages.engines:run",
    "images": "nbimages.engines:images",
    "rm": "nbimages.engines:rm",
    "tag": "nbimages.engines:tag",
    "store_df": "nbimages.maintenance:df",
    "store_prune": "nbimages.maintenance:prune",
    "store_check": "nbimages.maintenance:check",
    "ps": "nbimages.engines:ps",
    "stop": "nbimages.engines:stop",
    "logs": "nbimages.engines:logs",
    "explore": "nbimages.notebook.explorer:explore",
    "freeze": "nbimages.workflow.freeze:freeze",
    "build_notebook": "nbimages.workflow.notebook_recipe:build_notebook",
    "verify": "nbimages.workflow.verify:verify",
    "handout": "nbimages.workflow.handout:handout",
    "execute": "nbimages.execution:execute",
    "verify_outputs": "nbimages.execution:verify_outputs",
}
# Not public: what the facade provides to modules below it (see nbimages/verbs.py).
_PROVIDED = {"command_table": "nbimages.commands.verbs:TABLE"}
# public submodules, imported on first use: nbimages.kernel.install(...)
_SUBMODULES = ("kernel",)

__all__ = sorted(_EXPORTS) + list(_SUBMODULES) + ["errors", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"nbimages.{name}")
    target = _EXPORTS.get(name) or _PROVIDED.get(name)
    if target is None:
        raise AttributeError(f"module 'nbimages' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def _lazy(name: str) -> Any:
    return lambda *args, **kwargs: __getattr__(name)(*args, **kwargs)


# Image.inspect()/save()/push()/run(), Recipe.build() and %image explore call these (see nbimages/verbs.py).
_verbs.PROVIDED.update({name: _lazy(name) for name in ("inspect", "save", "push", "run", "engine", "explore")})
_verbs.PROVIDED["command_table"] = lambda: __getattr__("command_table")


def load_ipython_extension(ipython) -> None:
    """`%load_ext nbimages`: register the %image / %%image magics."""
    from .notebook.magics import load_ipython_extension as _load
    _load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .notebook.magics import unload_ipython_extension as _unload
    _unload(ipython)
