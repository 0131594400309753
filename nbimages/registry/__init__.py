"""The distribution API below the image model: the wire client, auth, search and tag listing.

    nbimages.tags("127.0.0.1:5000/team/python", details=True)

Registry-backed images (pull, push, open_remote) are a source like the others:
nbimages/sources/remote.py; copying between transports is nbimages/sources/copy.py.

Our own thin client on `requests` (see client.py) rather than python-dxf or oras: we need
Docker's credential sources and Hub naming, auth over plain http for loopback registries,
resumable chunked uploads and Range-resumed downloads, which neither library provides.
"""

from __future__ import annotations

from .auth import Credentials
from .client import RegistryClient, client_for
from .listing import catalog, search, tags

__all__ = ["search", "tags", "catalog", "RegistryClient", "Credentials", "client_for"]

