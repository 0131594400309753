"""Public functions that modules below them call: provided by the facade, looked up here.

`Image.inspect()/.save()/.push()/.run()` and `Recipe.build(engine="docker")` are conveniences
whose work is done above the image model and the builder (analysis, sources, registry,
engines). Those modules cannot import what is above them, so the facade
(`nbimages/__init__.py`) fills this table with callables that load the public function on
first use. The dependency points down: the model, the builder and the facade all import this
module; none imports the others.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import NbimagesError

PROVIDED: dict[str, Callable[..., Any]] = {}


def provided(name: str) -> Callable[..., Any]:
    """The public function `nbimages.<name>`, as the facade provided it."""
    func = PROVIDED.get(name)
    if func is None:  # only if nbimages/__init__.py did not run, which importing never allows
        raise NbimagesError(f"nbimages.{name} is not provided: import nbimages first.")
    return func
