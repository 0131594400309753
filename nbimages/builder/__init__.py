"""Build images from recipes, cells and Dockerfiles, without a daemon (issue 3).

`nbimages.Recipe` (recipe.py) holds a base and steps; `nbimages.build(...)` builds a Recipe or
a Dockerfile. The embedded builder (builder.py) writes reproducible layers into the store;
dockerfile.py reads and writes Dockerfiles; session.py is the notebook logic the magics call.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from .dockerfile import build_dockerfile, parse_dockerfile
from .recipe import Recipe

__all__ = ["Recipe", "build", "build_dockerfile", "parse_dockerfile"]


def build(source: "Recipe | str | os.PathLike", tag: str | None = None, *,
          context: str | os.PathLike = ".", **kwargs: Any):
    """Build a Recipe, or a Dockerfile given by path or text; returns the stored Image."""
    if isinstance(source, Recipe):
        return source.build(tag, **kwargs)
    return build_dockerfile(source, tag, context, **kwargs)


class _CallableModule(types.ModuleType):
    """`nbimages.build(...)` works even after `import nbimages.build` made it the module."""

    def __call__(self, *args: Any, **kwargs: Any):
        return build(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
