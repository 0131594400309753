"""The image config (image-spec config.md), checked on reading: the fields nbimages uses must
have the types the spec gives them, so a damaged or crafted config is one InvalidImage, not
an AttributeError deep in a table."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidImage
from . import canonical
from .digest import parse as parse_digest

WHAT = "image config"
_STRINGS = ("os", "architecture", "variant", "os.version", "created", "author")
_HISTORY_STRINGS = ("created", "created_by", "comment", "author")


def parse(config_bytes: bytes) -> dict[str, Any]:
    """The config as a dict, its used fields type-checked; InvalidImage otherwise."""
    config = canonical.loads(config_bytes, WHAT)
    for key in _STRINGS:
        canonical.field(config, key, str, WHAT)
    inner = canonical.field(config, "config", dict, WHAT, {})
    labels = canonical.field(inner, "Labels", dict, "image config's config", {})
    if not all(isinstance(v, str) for v in labels.values()):
        raise InvalidImage("the image config's labels are not all strings; the image is damaged.")
    for entry in canonical.field(config, "history", list, WHAT, []):
        if not isinstance(entry, dict):
            raise InvalidImage(f"a history entry of the image config is {entry!r}, not an "
                               "object; the image is damaged.")
        for key in _HISTORY_STRINGS:
            canonical.field(entry, key, str, "image config's history entry")
        canonical.field(entry, "empty_layer", bool, "image config's history entry")
    diff_ids(config)
    return config


def diff_ids(config: dict[str, Any]) -> list[str]:
    """`rootfs.diff_ids`, each a valid digest."""
    rootfs = canonical.field(config, "rootfs", dict, WHAT, {})
    ids = canonical.field(rootfs, "diff_ids", list, "image config's rootfs", [])
    for d in ids:
        if not isinstance(d, str):
            raise InvalidImage(f"the image config lists the diff_id {d!r}, which is not a "
                               "digest; the image is damaged.")
        parse_digest(d)
    return list(ids)
