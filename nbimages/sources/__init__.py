"""Open any image as an `Image`, and write Images back out: one model, many sources and sinks.

Sources use skopeo's transport names: `docker-daemon:REF`, `docker-archive:PATH[:REF]`,
`oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`, `docker://REF`, plus `store:NAME` for the local
store. A bare string is detected: an existing path (layout directory, docker or OCI tar), else
a reference looked up in the local store, then the Docker engine, then its registry.

One module per transport, each with its opener and its writer: files.py (docker-archive,
oci, oci-archive), daemon.py (docker-daemon), remote.py (docker://), the store (store.py);
opener.py picks the opener for a source string, sinks.py writes files and loads the engine,
copy.py copies between any two of them (and pushes any source).

Sinks: `save(image, path, format="docker"|"oci"|"oci-dir")` and `load_into_engine(image)`.
"""

from __future__ import annotations

from .opener import open_image, open_remote
from .sinks import FORMATS, default_tag, docker_tar_stream, load_into_engine, save
from .transports import TRANSPORTS, Source, parse_source

__all__ = ["open_image", "open_remote", "save", "load_into_engine", "docker_tar_stream", "parse_source",
           "Source", "TRANSPORTS", "FORMATS", "default_tag"]
