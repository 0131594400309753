"""The build context: the host directory COPY reads from, its .dockerignore, and file digests.

Sources are resolved as Docker does: relative to the context (a leading / too), wildcards
per path component (`*` matches dot files, like Go's filepath.Match), `..` that would leave
the context refused, symlinks followed only when they stay inside it. File digests are
remembered by (path, size, mtime, ctime, inode), so a rebuild does not re-read unchanged data.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import threading
from pathlib import Path

from ..errors import BuildError
from ..oci import digest as dg

_MAGIC = set("*?[")


class Context:
    """A build context directory with its .dockerignore rules."""

    def __init__(self, root: str | os.PathLike):
        path = Path(root).expanduser()
        if not path.is_dir():
            raise BuildError(f"the build context {str(root)!r} is not a directory; pass "
                             "context= the folder COPY sources are relative to.")
        self.root = path.resolve()
        self._spec = _load_dockerignore(self.root / ".dockerignore")

    def excluded(self, rel: str) -> bool:
        """True if .dockerignore excludes `rel` (a path relative to the context)."""
        return bool(self._spec) and self._spec.match_file(rel)

    def resolve(self, source: str) -> list[tuple[str, Path]]:
        """The (relative path, host path) pairs one COPY source names; BuildError if none."""
        if not isinstance(source, str) or not source.strip():
            raise BuildError(f"COPY source {source!r} is empty; name a file or folder of the "
                             f"build context {self.root}.")
        text = source.replace("\\", "/")
        raw = posixpath.normpath(text)
        if not text.startswith("/") and (raw == ".." or raw.startswith("../")):
            raise BuildError(f"COPY source {source!r} is outside the build context {self.root}; "
                             "only files under the context can be copied (move the file in, or "
                             "use a wider context=).")
        rel = posixpath.normpath("/" + text).lstrip("/")
        rel = "" if rel == "." else rel
        if any(c in _MAGIC for c in rel):
            matches = self._glob(rel)
            if not matches:
                raise BuildError(f"COPY source {source!r} matches no file in the build context "
                                 f"{self.root}.")
        else:
            if not os.path.lexists(self.root / rel):
                raise BuildError(f"COPY source {source!r} does not exist in the build context "
                                 f"{self.root}; check the name (paths are relative to the "
                                 "context).")
            matches = [rel]
        out = []
        for m in matches:
            if m and self.excluded(m):
                if len(matches) == 1:
                    raise BuildError(f"COPY source {source!r} is excluded by the context's "
                                     ".dockerignore; remove the pattern or copy another path.")
                continue
            host = self.root / m if m else self.root
            real = Path(os.path.realpath(host))
            if real != self.root and self.root not in real.parents:
                raise BuildError(f"COPY source {source!r} is a link to {real}, outside the build "
                                 f"context {self.root}; copy the real file into the context.")
            out.append((m, host))
        return out

    def _glob(self, pattern: str) -> list[str]:
        found = [""]
        for part in pattern.split("/"):
            nxt = []
            for base in found:
                d = self.root / base if base else self.root
                if not any(c in _MAGIC for c in part):
                    cand = f"{base}/{part}" if base else part
                    if os.path.lexists(self.root / cand):
                        nxt.append(cand)
                    continue
                try:
                    names = sorted(os.listdir(d))
                except (NotADirectoryError, FileNotFoundError):
                    continue
                nxt += [f"{base}/{n}" if base else n for n in names if fnmatch.fnmatchcase(n, part)]
            found = nxt
        return sorted(found)

    def include_under(self, rel_dir: str):
        """A filter for a directory copy: relative-to-dir path -> kept by .dockerignore?"""
        if not self._spec:
            return None
        prefix = f"{rel_dir}/" if rel_dir else ""
        return lambda rel: not self.excluded(prefix + rel)


def _load_dockerignore(path: Path):
    if not path.is_file():
        return None
    import pathspec
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:].strip() if neg else line
        # Docker anchors every pattern at the context root (filepath.Clean, leading / dropped).
        pat = posixpath.normpath(pat).lstrip("/")
        if pat in ("", "."):
            continue
        lines.append(("!" if neg else "") + "/" + pat)
    if not lines:
        return None
    from pathspec import util
    style = "gitignore" if "gitignore" in getattr(util, "_registered_patterns", {}) else \
        "gitwildmatch"
    return pathspec.PathSpec.from_lines(style, lines)


# ---- file digests with a stat cache (per process: a kernel keeps it between builds)

_digests: dict[tuple, str] = {}
_lock = threading.Lock()


def file_digest(path: str | os.PathLike, st: os.stat_result | None = None) -> str:
    """sha256 of a host file's content, remembered while its stat fields are unchanged."""
    st = st or os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    with _lock:
        hit = _digests.get(key)
    if hit:
        return hit
    with open(path, "rb") as f:
        value = dg.of_stream(f)[0]
    with _lock:
        if len(_digests) > 200_000:
            _digests.clear()
        _digests[key] = value
    return value
