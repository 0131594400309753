"""Open any image as an `Image`, and write Images back out: one model, many sources and sinks.

Sources use skopeo's transport names: `docker-daemon:REF`, `docker-archive:PATH[:REF]`,
`oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`, `docker://REF`, plus `store:NAME` for the local
store. A bare string is detected: an existing path (layout directory, docker or OCI tar), else
a reference looked up in the local store, then the Docker engine, then its registry.

One module per transport, each with its opener and its writer: docker_archive.py,
oci_archive.py, oci_layout.py, daemon.py (docker-daemon), local_store.py (store:),
remote.py (docker://; pull and push too); files.py is what the file transports share.
transports.py parses source and destination strings alike; opener.py holds the one table
of openers and writers (open_image, write_image); sinks.py is the save/load front; copy.py
copies between any two transports (and pushes any source).

Sinks: `save(image, path, format="docker"|"oci"|"oci-dir")` and `load_into_engine(image)`.
"""

from __future__ import annotations

from .opener import open_image, write_image
from .remote import open_remote
from .sinks import FORMATS, docker_tar_stream, load_into_engine, save
from .transports import TRANSPORTS, Source, parse_destination, parse_source

__all__ = ["open_image", "open_remote", "write_image", "save", "load_into_engine", "docker_tar_stream", "parse_source", "parse_destination",
           "Source", "TRANSPORTS", "FORMATS"]
