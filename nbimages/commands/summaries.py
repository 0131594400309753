"""The one-line summaries of the %image subcommands the shell also offers as its own verbs.

They are the summaries of those table entries (commands/verbs.py reads them from here) and the
lines of `nbimages --help`: kept in a module that imports nothing, so that the CLI's help lists
them without loading the table (which loads the whole API, eight times the start-up).
"""

from __future__ import annotations

SUMMARIES: dict[str, str] = {
    "save": "write an image as a docker-archive or OCI tar (or an OCI layout)",
    "pull": "pull an image into the local store, with progress",
    "push": "push an image to a registry, its digest kept",
    "copy-image": "copy an image between transports (registry, store, tars, layouts, engine)",
    "search": "search Docker Hub",
    "tags": "list the tags of a repository",
    "catalog": "list the repositories of a private registry",
    "execute": "run a notebook inside an image and compare its outputs with the saved ones",
    "kernel": "install, list or remove Jupyter kernels that run inside an image",
    "verify": "rebuild a notebook's image in a clean store and check its digest "
              "(--execute: and its outputs)",
    "handout": "write a notebook's image as OCI and docker tars, Dockerfile and README",
}
