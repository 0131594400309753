"""The build cache: step cache key -> the layer it made (descriptor, diff_id, extras).

One JSON file under the store home (`build-cache.json`), replaced atomically under the
store's lock so two kernels building at once merge their entries instead of losing one.
An entry only counts while its blob is still in the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import write_atomic

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

    def entries(self) -> dict[str, dict]:
        """Every entry as the file has it now (also those whose blob is gone)."""
        return self._read()

    def drop(self, keys) -> None:
        """Remove entries (read again under the lock, then replaced atomically): a prune."""
        keys = set(keys)
        if not keys:
            return
        with self.store.locked():
            current = {k: v for k, v in self._read().items() if k not in keys}
            self._write(current)

    def _write(self, entries: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"version": _VERSION, "layers": entries},
                                           sort_keys=True, separators=(",", ":")).encode())
        self._entries = entries

    def put_many(self, records: dict[str, dict]) -> None:
        """Merge `records` into the file (read again under the lock, then replaced atomically)."""
        if not records:
            return
        with self.store.locked():
            current = self._read()
            current.update(records)
            self._write(current)
