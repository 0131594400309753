"""Finding images: Docker Hub search, a repository's tags, a private registry's catalog.

Search speaks Docker Hub's repository search (`GET /v2/search/repositories/?query=&page_size=&page=`,
answering `{"count", "next", "results": [{"repo_name", "short_description", "star_count",
"pull_count", "is_official", ...}]}`); the trust badges are read from the fields Docker Hub
uses for them (`is_official`, and `badge`/`source` of the catalog search:
"verified_publisher", "open_source"). The base URL comes from `hub_url=`, else
NBIMAGES_HUB_URL, else https://hub.docker.com.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from ..errors import RegistryError
from ..oci import mediatypes as mt
from ..oci.manifest import Index, Manifest
from ..reference import Reference
from .client import client_for

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_HUB = "https://hub.docker.com"
SEARCH_COLUMNS = ["name", "description", "stars", "pulls", "official", "verified_publisher",
                  "sponsored_oss"]


def _badges(row: dict) -> tuple[bool, bool, bool]:
    badge = str(row.get("badge") or row.get("source") or "").lower()
    official = bool(row.get("is_official")) or badge in ("official", "store")
    verified = bool(row.get("is_verified_publisher") or row.get("verified_publisher")) or \
        badge in ("verified_publisher", "verified")
    oss = bool(row.get("is_open_source") or row.get("open_source")) or \
        badge in ("open_source", "sponsored_oss")
    return official, verified, oss


def search(term: str, limit: int = 25, *, hub_url: str | None = None,
           timeout: float = 30.0) -> pd.DataFrame:
    """Docker Hub repositories matching `term`: name, description, stars, pulls and badges."""
    import pandas as pd
    import requests  # only here: the registry client imports it when a registry is contacted
    if not term or not term.strip():
        raise RegistryError("search needs a term, for example nbimages.search('python').")
    base = (hub_url or os.environ.get("NBIMAGES_HUB_URL") or DEFAULT_HUB).rstrip("/")
    rows: list[dict] = []
    url: str | None = f"{base}/v2/search/repositories/"
    params: dict | None = {"query": term.strip(), "page_size": max(1, min(limit, 100)), "page": 1}
    with requests.Session() as s:
        while url and len(rows) < limit:
            try:
                resp = s.get(url, params=params, timeout=timeout)
            except requests.RequestException as e:
                raise RegistryError(f"could not reach the Docker Hub search at {base} "
                                    f"({e.__class__.__name__}). Check the network, or set "
                                    "NBIMAGES_HUB_URL to a reachable mirror.") from None
            if resp.status_code == 429:
                raise RegistryError("Docker Hub is rate limiting searches (HTTP 429); wait a minute.")
            if resp.status_code != 200:
                raise RegistryError(f"the Docker Hub search at {base} answered HTTP {resp.status_code}.")
            try:
                doc = resp.json()
                results = doc.get("results") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"the Docker Hub search at {base} did not answer JSON.") from None
            for r in results:
                official, verified, oss = _badges(r)
                name = r.get("repo_name") or r.get("name") or r.get("slug") or ""
                rows.append({
                    "name": name,
                    "description": r.get("short_description") or r.get("description") or "",
                    "stars": int(r.get("star_count") or 0),
                    "pulls": int(r.get("pull_count") or 0),
                    "official": official, "verified_publisher": verified, "sponsored_oss": oss,
                })
            nxt = doc.get("next")
            url, params = (urljoin(resp.url, nxt), None) if nxt and results else (None, None)
    return pd.DataFrame(rows[:limit], columns=SEARCH_COLUMNS)


def tags(ref: str | Reference, details: bool = False, **registry_kw) -> pd.DataFrame:
    """The tags of `ref`'s repository (pagination followed); with details, digest and size.

    `size` is the compressed size of a single-platform image (config plus layers); for a
    multi-platform index `platforms` lists what it holds and `size` is left empty.
    """
    import pandas as pd
    ref = Reference.parse(ref)
    client = client_for(ref, **registry_kw)
    names = client.tags(ref.repository)
    if not details:
        return pd.DataFrame({"tag": names}, columns=["tag"])

    def describe(tag: str) -> dict:
        raw, mtype, digest = client.get_manifest(ref.repository, tag)
        row = {"tag": tag, "digest": digest, "media_type": mtype, "size": None, "platforms": ""}
        if mt.is_index(mtype):
            idx = Index.parse(raw, mtype)
            row["platforms"] = ", ".join(str(d.platform) for d in idx.manifests if d.platform)
        else:
            m = Manifest.parse(raw, mtype)
            row["size"] = m.config.size + sum(d.size for d in m.layers)
        return row

    with ThreadPoolExecutor(max_workers=4) as pool:
        rows = list(pool.map(describe, names))
    df = pd.DataFrame(rows, columns=["tag", "digest", "size", "media_type", "platforms"])
    df["size"] = df["size"].astype("Int64")
    return df


def catalog(registry: str, **registry_kw) -> pd.DataFrame:
    """The repositories of a private registry (`/v2/_catalog`, pagination followed)."""
    import pandas as pd
    ref = Reference.parse(f"{registry.rstrip('/')}/x")
    client = client_for(ref, **registry_kw)
    return pd.DataFrame({"repository": client.catalog()}, columns=["repository"])
