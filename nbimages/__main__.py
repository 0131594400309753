"""`python -m nbimages` is the `nbimages` command."""

from .cli import main

raise SystemExit(main())
