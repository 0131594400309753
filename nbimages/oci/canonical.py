"""Canonical JSON bytes: sorted keys, compact separators, UTF-8; hashed and stored as-is."""

from __future__ import annotations

import json
from typing import Any
from ..errors import InvalidImage


def dumps(obj: Any) -> bytes:
    """The exact bytes we hash, store and push; never re-serialise after hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(data: bytes | str, what: str = "JSON document") -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidImage(f"the {what} is not valid JSON ({e}); the image is damaged or this is "
                           "not an image.") from None
