"""`python -m nbimages` is the `nbimages` command."""

from .cli import run

raise SystemExit(run())
