"""Bounded fuzzing of image input: valid archives and layers are mutated (bytes flipped,
blocks overwritten, cut short, spliced) and handed to the CLI in this process.

For every mutant: no exception escapes `nbimages.cli.main` (a traceback), nothing is
written outside the store and the output file, and memory stays bounded. Hypothesis runs a
fixed number of examples derandomized, so the suite takes a few seconds and is repeatable.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile as h
from nbimages.cli import main
from nbimages.sources import save

FILES = {"etc/motd": b"hello\n", "usr/bin/tool": b"\x7fELF" + bytes(3000),
         "var/lib/dpkg/status": b"Package: a\nStatus: install ok installed\nVersion: 1\n\n"}
SECOND = {"etc/motd": b"bye\n", "opt/.wh..wh..opq": b"", "opt/x": b"x" * 700}
VIEWS = ([], ["--files"], ["--sizes"], ["--unsafe"], ["--waste"], ["--packages"], ["--json"])
PEAK_GROWTH = 400 << 20  # bytes of VmHWM growth allowed over the whole run


def _peak() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) << 10


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """Valid inputs of every file kind: Docker-25 tar, OCI tar, legacy tar, .tar.gz."""
    d = tmp_path_factory.mktemp("seeds")
    layers = [(h.gz(h.layer(FILES)), h.LAYER_GZIP), (h.layer(SECOND), h.LAYER_TAR)]
    layout = h.oci_layout(d / "layout", layers)
    out = {}
    save(f"oci:{layout}", d / "docker.tar", tag="fuzz/seed:1")
    save(f"oci:{layout}", d / "oci.tar", format="oci", tag="fuzz/seed:1")
    out["docker.tar"] = (d / "docker.tar").read_bytes()
    out["oci.tar"] = (d / "oci.tar").read_bytes()
    out["docker.tar.gz"] = gzip.compress(out["docker.tar"], compresslevel=1, mtime=0)
    lay = h.layer(FILES)
    cfg = h.config([h.sha256(lay)])
    man = (b'[{"Config":"c.json","RepoTags":["fuzz/legacy:1"],"Layers":["0/layer.tar"]}]')
    out["legacy.tar"] = b"".join([h.member("c.json", cfg), h.member("0/layer.tar", lay),
                                  h.member("manifest.json", man)]) + bytes(1024)
    return out


def mutate(data: bytes, ops: list[tuple[str, float, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, where, junk in ops:
        at = int(where * len(buf)) if buf else 0
        if op == "flip" and buf:
            buf[min(at, len(buf) - 1)] ^= junk[0] if junk and junk[0] else 0xFF
        elif op == "overwrite":
            buf[at:at + len(junk)] = junk
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = junk
        elif op == "block":  # overwrite the 512-byte tar block holding `at`
            start = at - at % 512
            buf[start:start + 512] = (junk * (512 // max(1, len(junk)) + 1))[:512]
    return bytes(buf)


OPS = st.lists(st.tuples(st.sampled_from(["flip", "overwrite", "truncate", "insert", "block"]),
                         st.floats(0, 1, allow_nan=False), st.binary(min_size=1, max_size=64)),
               min_size=1, max_size=4)


def run_cli(args: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)  # an exception escaping here is the bug this test looks for
    return rc, err.getvalue()


def listing(root: Path, recursive: bool = True) -> set[str]:
    return {str(p.relative_to(root)) for p in (root.rglob("*") if recursive else root.iterdir())}


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(["docker.tar", "oci.tar", "legacy.tar", "docker.tar.gz"]),
       ops=OPS, view=st.sampled_from(VIEWS), also_save=st.booleans())
def test_mutated_archives_never_escape_the_cli(seeds, tmp_path, monkeypatch, kind, ops, view,
                                                also_save):
    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    src = work / kind
    src.write_bytes(mutate(seeds[kind], ops))
    monkeypatch.chdir(work)  # a stray relative write would land here
    before_tmp = listing(tmp_path.parent, recursive=False)
    peak = _peak()

    rc, err = run_cli(["inspect", str(src), *view])
    assert rc in (0, 1), err
    if rc == 1:
        assert err.startswith("nbimages: ") and "Traceback" not in err, err
    if also_save:
        rc, err = run_cli(["save", str(src), str(work / "out.tar")])
        assert rc in (0, 1), err
        if rc:
            assert not (work / "out.tar").exists()

    assert listing(work) <= {kind, "out.tar"}
    assert listing(tmp_path.parent, recursive=False) == before_tmp
    assert _peak() - peak < PEAK_GROWTH


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=OPS, compressed=st.booleans(), honest=st.booleans(), view=st.sampled_from(VIEWS))
def test_mutated_layers_never_escape_the_cli(tmp_path, ops, compressed, honest, view):
    """The layer itself is mutated and the layout re-digested around it, so the damage gets
    past the blob check to the inflater and the tar reader. With `honest` the config's
    diff_id is that of the mutant (when it inflates), so odd tars reach the tables too."""
    work = tmp_path / "lay"
    shutil.rmtree(work, ignore_errors=True)
    raw = h.layer(FILES)
    blob = mutate(h.gz(raw) if compressed else raw, ops)
    diff_id = h.sha256(raw)
    if honest:
        with contextlib.suppress(Exception):
            diff_id = h.sha256(gzip.decompress(blob) if compressed else blob)
    h.oci_layout(work, [(blob, h.LAYER_GZIP if compressed else h.LAYER_TAR)],
                 diff_ids=[diff_id])
    peak = _peak()
    rc, err = run_cli(["inspect", f"oci:{work}", *view])
    assert rc in (0, 1), err
    if rc == 1:
        assert "Traceback" not in err, err
    assert _peak() - peak < PEAK_GROWTH
    assert os.path.isdir(work)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=12), kids, max_size=3), max_leaves=8)
KEYS = {"index": ["schemaVersion", "mediaType", "manifests", "annotations"],
        "manifest": ["schemaVersion", "mediaType", "config", "layers", "annotations"],
        "config": ["architecture", "os", "variant", "rootfs", "history", "config", "created"]}


def _mutated_json(doc, where: list, value):
    """`doc` with the field at the path `where` (keys or list indexes, as far as they go)
    replaced by `value`; an empty path replaces the whole document."""
    if not where:
        return value
    import copy
    doc = copy.deepcopy(doc)
    node = doc
    for step in where[:-1]:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            break
    last = where[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    return doc


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=st.sampled_from(["index", "manifest", "config"]),
       where=st.lists(st.sampled_from(sorted({k for ks in KEYS.values() for k in ks}
                                             | {"diff_ids", "digest", "size", "platform"}))
                      | st.integers(0, 2), max_size=3),
       value=JSON, view=st.sampled_from(VIEWS))
def test_malformed_json_documents_never_escape_the_cli(tmp_path, target, where, value, view):
    """Index, manifest and config replaced field by field with arbitrary JSON, the digests
    around them made to match, so the parsers (not the digest checks) meet the damage."""
    import json as _json
    work = tmp_path / "js"
    shutil.rmtree(work, ignore_errors=True)
    (work / "blobs" / "sha256").mkdir(parents=True)
    lay = h.layer(FILES)

    def put(doc) -> bytes:
        raw = _json.dumps(doc).encode()
        (work / "blobs" / "sha256" / h.sha256(raw).split(":")[1]).write_bytes(raw)
        return raw

    put_blob = (work / "blobs" / "sha256" / h.sha256(lay).split(":")[1])
    put_blob.write_bytes(lay)
    cfg = _json.loads(h.config([h.sha256(lay)]))
    cfg_raw = put(_mutated_json(cfg, where, value) if target == "config" else cfg)
    man = _json.loads(h.manifest(cfg_raw, [(lay, h.LAYER_TAR)]))
    man_raw = put(_mutated_json(man, where, value) if target == "manifest" else man)
    idx = _json.loads(h.index(man_raw))
    (work / "index.json").write_bytes(_json.dumps(
        _mutated_json(idx, where, value) if target == "index" else idx).encode())
    (work / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    rc, err = run_cli(["inspect", f"oci:{work}", *view])
    assert rc in (0, 1), err
    if rc == 1:
        assert err.startswith("nbimages: ") and "Traceback" not in err, err


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=st.sampled_from(["manifest.json", "config"]),
       where=st.lists(st.sampled_from(["Config", "RepoTags", "Layers", "rootfs", "diff_ids",
                                       "history", "os", "architecture", "config"])
                      | st.integers(0, 2), max_size=3),
       value=JSON, view=st.sampled_from(VIEWS))
def test_malformed_docker_archive_json_never_escapes_the_cli(tmp_path, target, where, value, view):
    """The same for a `docker save` archive: manifest.json and the config (renamed to its new
    digest, as docker names it) replaced field by field with arbitrary JSON."""
    import json as _json
    lay = h.layer(FILES)
    cfg = _json.loads(h.config([h.sha256(lay)]))
    cfg_raw = _json.dumps(_mutated_json(cfg, where, value) if target == "config" else cfg).encode()
    cfg_name = h.sha256(cfg_raw).split(":")[1] + ".json"
    man = [{"Config": cfg_name, "RepoTags": ["fuzz/legacy:1"], "Layers": ["0/layer.tar"]}]
    man_raw = _json.dumps(_mutated_json(man, where, value) if target == "manifest.json"
                          else man).encode()
    path = h.raw_tar(tmp_path / "legacy.tar", [h.member(cfg_name, cfg_raw),
                                               h.member("0/layer.tar", lay),
                                               h.member("manifest.json", man_raw)])
    rc, err = run_cli(["inspect", f"docker-archive:{path}", *view])
    assert rc in (0, 1), err
    if rc == 1:
        assert err.startswith("nbimages: ") and "Traceback" not in err, err
