"""The build cache: step cache key -> the layer it made (descriptor, diff_id, extras).

One JSON file under the store home (`build-cache.json`), replaced atomically under the
store's lock so two kernels building at once merge their entries instead of losing one.
An entry only counts while its blob is still in the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CACHE_FILE = "build-cache.json"
_VERSION = 1


class BuildCache:
    def __init__(self, store):
        self.store = store
        self.path = Path(store.home) / CACHE_FILE
        self._entries = self._read()

    def _read(self) -> dict[str, dict]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or doc.get("version") != _VERSION:
            return {}
        layers = doc.get("layers")
        return layers if isinstance(layers, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        rec = self._entries.get(key)
        if not rec or not isinstance(rec, dict):
            return None
        try:
            if not self.store.has_blob(rec["digest"]):
                return None
        except Exception:  # noqa: BLE001 - a damaged record is a miss, not a failure
            return None
        return rec

    def put_many(self, records: dict[str, dict]) -> None:
        """Merge `records` into the file (read again under the lock, then replaced atomically)."""
        if not records:
            return
        with self.store.locked():
            current = self._read()
            current.update(records)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-cache-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"version": _VERSION, "layers": current}, f, sort_keys=True,
                              separators=(",", ":"))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            self._entries = current
