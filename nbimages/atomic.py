"""Atomic file writes: content goes to a temporary file beside the target, is flushed to disk,
and is renamed into place only when complete, so readers never see a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable


def write_atomic(target: str | os.PathLike, data: bytes | Iterable[bytes], *,
                 mode: int = 0o644, fsync: bool = True) -> Path:
    """Write `data` (bytes or an iterable of chunks) to `target` atomically; returns the path.

    On any error (or interrupt) the temporary file is removed and `target` is untouched.
    An iterable with a `close()` (a generator) is closed when done. `fsync=False` skips the
    flush to disk, for caches whose readers check what they read (the layer index).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                for chunk in data:
                    f.write(chunk)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        close = getattr(data, "close", None)
        if close is not None and not isinstance(data, (bytes, bytearray, memoryview)):
            close()
    return target
