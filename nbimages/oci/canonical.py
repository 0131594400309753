"""Canonical JSON bytes: sorted keys, compact separators, UTF-8; hashed and stored as-is."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidImage


def dumps(obj: Any) -> bytes:
    """The exact bytes we hash, store and push; never re-serialise after hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(data: bytes | str, what: str = "JSON document", expect: type | None = dict) -> Any:
    """Parse JSON we did not write; InvalidImage unless it is valid and of type `expect`
    (an object by default; None accepts any value)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise InvalidImage(f"the {what} is not valid JSON ({why}); the image is damaged or this "
                           "is not an image.") from None
    if expect is not None and not isinstance(doc, expect):
        raise InvalidImage(f"the {what} is a JSON {type(doc).__name__}, not "
                           f"{'an object' if expect is dict else 'a ' + expect.__name__}; the "
                           "image is damaged or this is not an image.")
    return doc


def field(doc: dict, key: str, kind: type | tuple, what: str, default: Any = None) -> Any:
    """`doc[key]` checked to be of `kind` (missing or null gives `default`)."""
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, (int, float)):
        raise InvalidImage(f"the {what}'s {key!r} is {value!r}, which is not "
                           f"{_kind_name(kind)}; the image is damaged.")
    return value


def _kind_name(kind) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "a number"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)
