"""The persistent layer index: each layer's per-entry table, stored once, read by every image.

Layers are content-addressed and never change, so the table `walk.read_layer` builds from a
layer tar (path, kind, size, mode, uid, gid, mtime, link target, whiteouts, unsafe entries)
is a fact about its diff_id. It is written to `<store home>/layer-index/sha256/<hex>` the
first time a layer is read *and verified* (the tar hashed to that diff_id, the blob to its
digest) and by the builder; later inspections of any image holding the layer read the file
instead of the layer, so a registry image downloads only layers never seen.

The file is columnar and compact: a small JSON header, then sections in zlib's format,
compressed by ISA-L at its level 1, an order of magnitude faster than zlib's for the same
size (names joined by NUL, one byte per kind, 8-byte arrays for the numbers, a JSON block for
the rare links and unsafe entries). The header names the diff_id and the (blob digest,
diff_id) pairs seen to verify, and the SHA-256 of the sections: a file that does not match
is ignored, deleted and rebuilt from the layer, never trusted. The index is bounded
(NBIMAGES_LAYER_INDEX_MAX_BYTES, 512 MiB by default; the least recently used files go
first), counted by `store df`, dropped by `store prune`; NBIMAGES_LAYER_INDEX=0 turns it off.

Beside the layers' tables, `chains/` keeps what walking a whole stack of layers gave (the
summary numbers, the layer, waste and unsafe tables, the notes), keyed by the OCI ChainID of
the stack: inspecting the same image again, in a new process, reads one small file and no
layer table. Such a file names the diff_ids it covers and the code that computed it (a
fingerprint of the analysis modules), so results of another version are never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import time
import zlib
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

from isal import isal_zlib

from ..atomic import write_atomic
from ..oci import digest as dg
from ..oci.tarwriter import END_OF_ARCHIVE, FILE, Entry, encode_header
from ..store import default_home
from .walk import LayerFiles, read_layer

MAGIC = b"NBLAYERINDEX1\n"
RESULTS_MAGIC = b"NBSTACKRESULTS1\n"
FORMAT = 1
DIRNAME = "layer-index"
CHAINS = "chains"  # results of whole stacks of layers, by ChainID
_ALGORITHMS = ("sha256", "sha512")
DEFAULT_MAX_BYTES = 512 << 20
_NUMERIC = ("sizes", "modes", "uids", "gids", "mtimes")
_TYPECODES = {"sizes": "q", "modes": "l", "uids": "q", "gids": "q", "mtimes": "q"}


def enabled() -> bool:
    """False when NBIMAGES_LAYER_INDEX is 0/off/no/false."""
    return os.environ.get("NBIMAGES_LAYER_INDEX", "1").strip().lower() not in ("0", "off", "no",
                                                                                "false")


def max_bytes() -> int:
    try:
        return max(0, int(os.environ.get("NBIMAGES_LAYER_INDEX_MAX_BYTES", DEFAULT_MAX_BYTES)))
    except ValueError:
        return DEFAULT_MAX_BYTES


class LayerIndex:
    """The index directory of one store home (`root`), keyed by diff_id."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.root = Path(home) / DIRNAME if home else default_home() / DIRNAME
        # bytes in the index as of this object's last scan plus what it has written since:
        # the bound is checked against this, so saving the tables of an image's layers scans
        # the index once, not once per layer (None: not scanned yet)
        self._used: int | None = None

    def path(self, diff_id: str) -> Path:
        alg, _, hexpart = diff_id.partition(":")
        return self.root / alg / hexpart

    def results_path(self, chain: str) -> Path:
        alg, _, hexpart = chain.partition(":")
        return self.root / CHAINS / alg / hexpart

    def files(self) -> list[Path]:
        """Every layer table (finished ones: temporaries start with a dot)."""
        return _listed(self.root)

    def results_files(self) -> list[Path]:
        """Every file of stack results."""
        return _listed(self.root / CHAINS)

    def all_files(self) -> list[Path]:
        """Layer tables and stack results: what the bound, `df`, `prune` and `check` cover."""
        return self.files() + self.results_files()

    def usage(self) -> tuple[int, int]:
        """(number of index files, bytes on disk)."""
        count = size = 0
        for p in self.all_files():
            with contextlib.suppress(OSError):
                size += p.stat().st_size
                count += 1
        return count, size

    # ------------------------------------------------------------------ read
    def load(self, diff_id: str | None, digest: str | None = None) -> LayerFiles | None:
        """The table of the layer `diff_id`, or None when it is not indexed or the file does
        not check out (then it is deleted, so the caller's read of the layer rebuilds it)."""
        if not diff_id or not enabled() or not dg.is_digest(diff_id):
            return None
        p = self.path(diff_id)
        lf = _read_checked(p, _decode, diff_id)
        if lf is None:
            return None
        if digest is not None:
            with contextlib.suppress(OSError):
                os.utime(p)  # least recently used is evicted first
        return lf

    def damaged(self) -> list[tuple[str, Path]]:
        """(diff_id, file) of every index file that does not check out: its SHA-256, its
        shape, or the diff_id it names differs from the one in its file name."""
        bad = []
        for p in self.all_files():
            key = f"{p.parent.name}:{p.name}"
            try:
                data = p.read_bytes()
            except OSError:
                continue
            decode = _decode_results if p.parent.parent.name == CHAINS else _decode
            if not dg.is_digest(key) or decode(data, key) is None:
                bad.append((key, p))
        return bad

    # ------------------------------------------------------------------ stack results
    def load_results(self, diff_ids: list[str], producer: str) -> dict | None:
        """What `save_results` recorded for exactly these layers and this `producer`, or None
        (a file that does not check out is deleted)."""
        chain = chain_id(diff_ids)
        if chain is None or not enabled():
            return None
        p = self.results_path(chain)
        found = _read_checked(p, _decode_results, chain)
        if found is None:
            return None
        if found[0] != {"diff_ids": diff_ids, "producer": producer}:
            return None  # another version's results: replaced by the caller's next save
        with contextlib.suppress(OSError):
            os.utime(p)
        return found[1]

    def save_results(self, diff_ids: list[str], producer: str, results: dict) -> Path | None:
        """Record the results of walking the layers `diff_ids` (bottom first), as computed
        by `producer`; `results` must be plain JSON. Errors never fail the caller."""
        chain = chain_id(diff_ids)
        if chain is None or not enabled():
            return None
        p = self.results_path(chain)
        try:
            data = _encode_results(chain, {"diff_ids": diff_ids, "producer": producer}, results)
            write_atomic(p, data, fsync=False)
            self._written(p, len(data))
        except (OSError, ValueError):
            return None
        return p

    # ------------------------------------------------------------------ write
    def save(self, lf: LayerFiles, diff_id: str | None, digest: str | None) -> Path | None:
        """Record the table of a layer whose tar was just verified against `diff_id` (and its
        blob against `digest`). Errors writing the index never fail the caller's read."""
        if not diff_id or not enabled() or not dg.is_digest(diff_id):
            return None
        p = self.path(diff_id)
        blobs = [digest] if digest else []
        if p.exists():
            return p
        try:
            data = _encode(lf, diff_id, blobs)
            write_atomic(p, data, fsync=False)
            self._written(p, len(data))
        except OSError:
            return None
        return p

    def _written(self, p: Path, size: int) -> None:
        """Count the file of `size` bytes just written at `p`; trim the index (keeping `p`)
        when it may be over its bound, or was not scanned yet."""
        if self._used is None or self._used + size > max_bytes():
            self.trim(keep=p)
        else:
            self._used += size

    def trim(self, keep: Path | None = None, limit: int | None = None) -> list[Path]:
        """Delete the least recently used files until the index fits its bound."""
        limit = max_bytes() if limit is None else limit
        stats = []
        total = 0
        for p in self.all_files():
            with contextlib.suppress(OSError):
                st = p.stat()
                stats.append((st.st_mtime, p, st.st_size))
                total += st.st_size
        dropped = []
        for _mtime, p, size in sorted(stats, key=lambda s: (s[0], str(s[1]))):
            if total <= limit:
                break
            if p == keep:
                continue
            with contextlib.suppress(OSError):
                p.unlink()
                dropped.append(p)
                total -= size
        self._used = total
        return dropped

    def clear(self, older_than: float | None = None) -> list[tuple[Path, int]]:
        """Remove every index file (older than `older_than` seconds, if given)."""
        now = time.time()
        out = []
        for p in self.all_files():
            with contextlib.suppress(OSError):
                st = p.stat()
                if older_than is not None and now - st.st_mtime < older_than:
                    continue
                p.unlink()
                out.append((p, st.st_size))
        return out


def _read_checked(p: Path, decode, key: str):
    """`decode(data, key)` of the file `p`; None when it is missing or does not check out,
    and then a file that is there is deleted (never used, rebuilt by the next reader)."""
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError:
        return None
    found = decode(data, key)
    if found is None:
        with contextlib.suppress(OSError):
            p.unlink()
    return found


def _listed(base: Path) -> list[Path]:
    out = []
    for alg in _ALGORITHMS:
        with contextlib.suppress(OSError):
            out.extend(p for p in (base / alg).iterdir() if not p.name.startswith("."))
    return out


def chain_id(diff_ids: list[str]) -> str | None:
    """The OCI ChainID of a stack of layers (image-spec, "Layer ChainID"): the diff_id of the
    bottom layer, then SHA-256 of "<chain below> <diff_id>" for each layer up. None when the
    stack is empty or a diff_id is missing or malformed."""
    if not diff_ids or not all(d and dg.is_digest(d) for d in diff_ids):
        return None
    chain = diff_ids[0]
    for d in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
    return chain


def index_written_layer(home: str | os.PathLike, entries: list[Entry], mtime: int,
                        diff_id: str, digest: str) -> Path | None:
    """The builder's entry: index a layer it has just written from `entries` (with the
    diff_id and digest it hashed as it wrote them). The headers are encoded again and read
    by the same reader as any layer, the file data stands as zeros, so no file is read twice
    and the table is exactly what reading the blob would give."""
    index = LayerIndex(home)
    if not enabled() or index.path(diff_id).exists():
        return None
    return index.save(read_layer(_Skeleton(_skeleton(entries, mtime))), diff_id, digest)


def _skeleton(entries: Iterable[Entry], mtime: int) -> Iterator[bytes | int]:
    """`tarwriter.iter_tar`'s stream with each file's data (and padding) as a count of zeros."""
    for entry in entries:
        yield encode_header(entry, mtime)
        if entry.kind == FILE and entry.size:
            yield entry.size + (-entry.size % 512)
    yield END_OF_ARCHIVE


class _Skeleton(io.RawIOBase):
    """A read-only stream over header bytes and runs of zeros."""

    def __init__(self, parts: Iterator[bytes | int]):
        self._parts = parts
        self._head = memoryview(b"")
        self._zeros = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._head and not self._zeros:
            part = next(self._parts, None)
            if part is None:
                return 0
            if isinstance(part, int):
                self._zeros = part
            else:
                self._head = memoryview(part)
        if self._head:
            k = min(len(b), len(self._head))
            b[:k] = self._head[:k]
            self._head = self._head[k:]
            return k
        k = min(len(b), self._zeros)
        b[:k] = bytes(k)
        self._zeros -= k
        return k


# ---------------------------------------------------------------------- the file format

def _encode(lf: LayerFiles, diff_id: str, blobs: list[str]) -> bytes:
    extra = {
        "size": lf.size,
        "links": [[i, t] for i, t in lf.links.items()],
        "members": [[i, t] for i, t in lf.members.items()],
        "unsafe": [[i, why] for i, why in lf.unsafe],
        "whiteouts": lf.whiteouts,
        "opaques": lf.opaques,
    }
    names = "\0".join(lf.paths).encode("utf-8", "surrogateescape")
    sections = [names, bytes(lf.kinds)] + [getattr(lf, c).tobytes() for c in _NUMERIC] + [
        json.dumps(extra, separators=(",", ":"), ensure_ascii=False)
        .encode("utf-8", "surrogateescape")]
    body = isal_zlib.compress(b"".join(sections), 1)
    header = {
        "format": FORMAT,
        "diff_id": diff_id,
        "verified": [[b, diff_id] for b in blobs],
        "entries": len(lf.paths),
        "byteorder": sys.byteorder,
        "itemsizes": [getattr(lf, c).itemsize for c in _NUMERIC],
        "sections": [len(s) for s in sections],
    }
    return _frame(MAGIC, header, body)


def _decode(data: bytes, diff_id: str) -> LayerFiles | None:
    """The table in `data`, or None unless every check passes."""
    try:
        framed = _unframe(data, MAGIC)
        if framed is None:
            return None
        header, body = framed
        if (header.get("format") != FORMAT or header.get("diff_id") != diff_id
                or header.get("byteorder") != sys.byteorder
                or header.get("itemsizes") != [array(_TYPECODES[c]).itemsize for c in _NUMERIC]):
            return None
        raw = isal_zlib.decompress(body)
        lengths = header["sections"]
        if sum(lengths) != len(raw) or len(lengths) != 8:
            return None
        parts = []
        pos = 0
        for size in lengths:
            parts.append(raw[pos:pos + size])
            pos += size
        count = header["entries"]
        lf = LayerFiles()
        lf.paths = parts[0].decode("utf-8", "surrogateescape").split("\0") if count else []
        lf.kinds = bytearray(parts[1])
        for c, chunk in zip(_NUMERIC, parts[2:7]):
            a = array(_TYPECODES[c])
            a.frombytes(chunk)
            setattr(lf, c, a)
        if any(len(x) != count for x in (lf.paths, lf.kinds, lf.sizes, lf.modes, lf.uids,
                                         lf.gids, lf.mtimes)):
            return None
        extra = json.loads(parts[7].decode("utf-8", "surrogateescape"))
        lf.size = int(extra["size"])
        lf.links = {int(i): t for i, t in extra["links"]}
        lf.members = {int(i): t for i, t in extra["members"]}
        lf.unsafe = [(int(i), why) for i, why in extra["unsafe"]]
        lf.whiteouts = [int(i) for i in extra["whiteouts"]]
        lf.opaques = [int(i) for i in extra["opaques"]]
        if any(not 0 <= i < count for i in (*lf.links, *lf.members, *lf.whiteouts, *lf.opaques,
                                             *(i for i, _ in lf.unsafe))):
            return None
        return lf
    except (ValueError, KeyError, TypeError, zlib.error, isal_zlib.IsalError, UnicodeError):
        return None


def _frame(magic: bytes, header: dict, body: bytes) -> bytes:
    """An index file: `magic`, the header's length, the header as JSON with the SHA-256 of
    the body added last, the body."""
    head = json.dumps({**header, "sha256": hashlib.sha256(body).hexdigest()},
                      separators=(",", ":")).encode()
    return magic + len(head).to_bytes(4, "big") + head + body


def _unframe(data: bytes, magic: bytes) -> tuple[dict, memoryview] | None:
    """(header, body) of what `_frame` wrote, or None when the magic or the body's SHA-256
    does not check out; a malformed header raises ValueError or TypeError."""
    if not data.startswith(magic):
        return None
    at = len(magic)
    n = int.from_bytes(data[at:at + 4], "big")
    header = json.loads(data[at + 4:at + 4 + n])
    body = memoryview(data)[at + 4 + n:]
    if not isinstance(header, dict) or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        return None
    return header, body


def _encode_results(chain: str, key: dict, results: dict) -> bytes:
    body = isal_zlib.compress(json.dumps(results, separators=(",", ":")).encode(), 1)
    return _frame(RESULTS_MAGIC, {"format": FORMAT, "chain": chain, **key}, body)


def _decode_results(data: bytes, chain: str) -> tuple[dict, dict] | None:
    """(the key it was saved under, the results), or None unless every check passes."""
    try:
        framed = _unframe(data, RESULTS_MAGIC)
        if framed is None:
            return None
        header, body = framed
        if header.get("format") != FORMAT or header.get("chain") != chain:
            return None
        results = json.loads(isal_zlib.decompress(body))
        if not isinstance(results, dict):
            return None
        return {"diff_ids": header.get("diff_ids"), "producer": header.get("producer")}, results
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error,
            isal_zlib.IsalError, UnicodeError):
        return None
