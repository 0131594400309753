"""The hash helper process: digests of file ranges off this process's GIL, the layer checks
that use it, and what happens when it is off, killed, or its client dies."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future

import pytest

import hostile as h
import nbimages
from nbimages import errors
from nbimages.oci import rangehash


def _gone(pid: int, within: float = 10) -> bool:
    """True once `pid` no longer runs (reaped, or a zombie of a parent that is gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def hasher():
    client = rangehash.RangeHasher()
    yield client
    client.close()


def test_digests_of_ranges_equal_hashlib_and_count_what_the_file_holds(tmp_path, hasher):
    data = os.urandom(3 << 20) + b"tail"
    path = tmp_path / "blob"
    path.write_bytes(data)
    with open(path, "rb") as f:
        cases = [(0, len(data), "sha256"), (512, 1 << 20, "sha256"), (7, 5, "sha512"),
                 (len(data) - 100, 1000, "sha256"), (len(data) + 10, 10, "sha256")]
        futures = [hasher.submit(f.fileno(), off, n, alg) for off, n, alg in cases]
        for (off, n, alg), fut in zip(cases, futures):
            want = data[off:off + n]
            assert fut.result(timeout=30) == (hashlib.new(alg, want).hexdigest(), len(want))


def test_the_helper_has_its_own_descriptor_so_the_caller_may_close_its_own(tmp_path, hasher):
    data = os.urandom(2 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    f = open(path, "rb")
    fut = hasher.submit(f.fileno(), 0, len(data))
    f.close()
    assert fut.result(timeout=30) == (hashlib.sha256(data).hexdigest(), len(data))


def test_a_killed_helper_fails_what_waits_and_is_not_used_again(tmp_path, hasher):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 4096)
    with open(path, "rb") as f:
        hasher.submit(f.fileno(), 0, 4096).result(timeout=30)
        pid = hasher.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert _gone(pid)
        with pytest.raises(rangehash.Unavailable):
            for _ in range(100):  # the reply thread notices the end at once, or this does
                hasher.submit(f.fileno(), 0, 4096).result(timeout=30)
                time.sleep(0.05)


def test_the_helper_ends_when_its_client_dies_without_closing_it(tmp_path):
    """A process killed before its exit handlers run leaves no helper behind: the helper sees
    its socket close and exits."""
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(1 << 20))
    child = textwrap.dedent(f"""
        import os, sys
        from nbimages.oci import rangehash
        with open({str(path)!r}, "rb") as f:
            rangehash.submit(f.fileno(), 0, 1 << 20).result(timeout=30)
        print(rangehash.helper().pid, flush=True)
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         timeout=60, check=True)
    assert _gone(int(out.stdout))


def test_turned_off_the_helper_is_not_started(monkeypatch):
    monkeypatch.setenv("NBIMAGES_HASH_HELPER", "0")
    with pytest.raises(rangehash.Unavailable, match="NBIMAGES_HASH_HELPER"):
        rangehash.submit(0, 0, 1)


# ---------------------------------------------------------------- layer checks that use it

BIG = {f"data/f{i}.bin": os.urandom(700_000) for i in range(8)}  # a layer of about 5.6 MB


def _archive(tmp_path, layers: list[bytes], diff_ids: list[str] | None = None):
    """A docker-archive of plain layer tars (the case the helper serves)."""
    cfg = h.config(diff_ids or [h.sha256(x) for x in layers])
    name = h.sha256(cfg).split(":")[1] + ".json"
    members = [f"{i}/layer.tar" for i in range(len(layers))]
    man = json.dumps([{"Config": name, "RepoTags": [], "Layers": members}]).encode()
    return h.raw_tar(tmp_path / "a.tar", [h.member(name, cfg)]
                     + [h.member(m, x) for m, x in zip(members, layers)]
                     + [h.member("manifest.json", man)])


def _layers() -> list[bytes]:
    return [h.layer({**BIG, f"etc/layer{i}": b"%d\n" % i}) for i in range(3)]


def test_big_plain_layers_are_checked_by_the_helper_with_the_same_results(tmp_path, monkeypatch):
    layers = _layers()
    assert len(layers[0]) >= rangehash.MIN_BYTES
    path = _archive(tmp_path, layers)
    calls = []
    real = rangehash.submit
    monkeypatch.setattr(rangehash, "submit", lambda *a: calls.append(a) or real(*a))
    insp = nbimages.inspect(f"docker-archive:{path}", index=False)
    ours = insp.to_json()
    assert len(calls) == 3 and all(layer.verified for layer in insp.image.layers)
    monkeypatch.setenv("NBIMAGES_HASH_HELPER", "0")
    assert nbimages.inspect(f"docker-archive:{path}", index=False).to_json() == ours


@pytest.mark.parametrize("helper", ["1", "0"])
def test_a_big_layer_that_is_not_its_diff_id_is_refused_the_same_way(tmp_path, monkeypatch, helper):
    monkeypatch.setenv("NBIMAGES_HASH_HELPER", helper)
    layers = _layers()
    wrong = h.sha256(b"another layer")
    path = _archive(tmp_path, layers, [h.sha256(layers[0]), wrong, h.sha256(layers[2])])
    with pytest.raises(errors.DigestMismatch) as e:
        nbimages.inspect(f"docker-archive:{path}", index=False)
    msg = str(e.value)
    assert "layer 1" in msg and wrong in msg and h.sha256(layers[1]) in msg
    assert e.value.expected == wrong and e.value.actual == h.sha256(layers[1])


def _held_answers(monkeypatch, gate: threading.Event) -> list[Future]:
    """Have the helper's answers arrive only once `gate` is set (or after 10 s); returns the
    futures handed out."""
    held: list[Future] = []
    real = rangehash.submit

    def slow(*a):
        inner, outer = real(*a), Future()
        held.append(outer)

        def answer():
            gate.wait(10)
            outer.set_result(inner.result())
        threading.Thread(target=answer, daemon=True).start()
        return outer
    monkeypatch.setattr(rangehash, "submit", slow)
    return held


def test_the_reader_goes_on_while_the_hashes_run_and_keeps_nothing_unchecked(tmp_path,
                                                                             monkeypatch):
    """The layers are read and walked without waiting for their hashes; the walk is kept,
    and the layers indexed, only once every hash has passed."""
    from nbimages import image as image_module
    from nbimages.analysis.layerindex import LayerIndex
    from nbimages.analysis.walk import Walk
    path = _archive(tmp_path, _layers())
    monkeypatch.setattr(image_module, "_verified", set())  # as in a new process
    gate = threading.Event()
    held = _held_answers(monkeypatch, gate)
    at_finish = []
    real_finish = Walk.finish

    def finish(walk):
        at_finish.append((len(walk.layers), [f.done() for f in held],
                          len(LayerIndex().files())))
        gate.set()
        real_finish(walk)
    monkeypatch.setattr(Walk, "finish", finish)
    insp = nbimages.inspect(f"docker-archive:{path}")
    assert at_finish == [(3, [False] * 3, 0)]  # all read and walked, nothing checked yet
    assert insp.walked and len(LayerIndex().files()) == 3
    monkeypatch.setenv("NBIMAGES_HASH_HELPER", "0")
    assert nbimages.inspect(f"docker-archive:{path}", index=False).to_json() == insp.to_json()


def test_a_bad_layer_is_named_before_a_layer_above_it_that_does_not_parse(tmp_path, monkeypatch):
    from nbimages import image as image_module
    from nbimages.analysis.layerindex import LayerIndex
    monkeypatch.setattr(image_module, "_verified", set())  # as in a new process
    layers = _layers()
    layers[2] = layers[2][:len(layers[2]) // 2]  # cut short: reading it fails
    wrong = h.sha256(b"another layer")
    path = _archive(tmp_path, layers, [h.sha256(layers[0]), wrong, h.sha256(layers[2])])
    gate = threading.Event()
    held = _held_answers(monkeypatch, gate)  # layer 2 fails while 0 and 1 are unchecked
    threading.Timer(0.5, gate.set).start()
    with pytest.raises(errors.DigestMismatch) as e:
        nbimages.inspect(f"docker-archive:{path}")
    assert "layer 1" in str(e.value) and e.value.expected == wrong and len(held) == 2
    # the layer that passed is indexed; the bad one, the cut one and the stack are not
    assert [p.name for p in LayerIndex().files()] == [h.sha256(layers[0]).split(":")[1]]
    assert not LayerIndex().results_files()
    layers[1] = _layers()[1]
    path = _archive(tmp_path, layers)
    with pytest.raises(errors.InvalidImage, match="Layer 2 .*truncated"):
        nbimages.inspect(f"docker-archive:{path}")


def test_when_the_helper_fails_the_layer_is_hashed_here(tmp_path, monkeypatch):
    """A helper that dies mid-way (its futures fail) costs time, never the check."""
    layers = _layers()
    wrong = h.sha256(b"another layer")
    path = _archive(tmp_path, layers, [h.sha256(layers[0]), h.sha256(layers[1]), wrong])

    def failing(*_a):
        fut = Future()
        fut.set_exception(rangehash.Unavailable("the hash helper ended"))
        return fut
    monkeypatch.setattr(rangehash, "submit", failing)
    with pytest.raises(errors.DigestMismatch, match="layer 2"):
        nbimages.inspect(f"docker-archive:{path}", index=False)


def test_the_command_line_exits_at_once_and_leaves_no_helper(tmp_path):
    path = _archive(tmp_path, _layers())
    mark = f"NBIMAGES_TEST_MARK=helper-{os.getpid()}-{time.monotonic_ns()}"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "nbimages", "inspect", "--json",
                           f"docker-archive:{path}"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, mark.split("=")[0]: mark.split("=")[1]})
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 30
    assert json.loads(proc.stdout)["layers"]
    time.sleep(0.2)
    assert not _helpers(mark.encode())


def _helpers(mark: bytes) -> set[int]:
    """Helper processes still running with `mark` in their environment."""
    found = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if b"hashhelper.py" not in f.read():
                        continue
                with open(f"/proc/{d}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        found.add(int(d))
            except OSError:
                pass
    return found


def test_a_forked_child_starts_its_own_helper_and_the_parents_still_ends(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    child = textwrap.dedent(f"""
        import hashlib, os, sys, time
        from nbimages.oci import rangehash
        with open({str(path)!r}, "rb") as f:
            rangehash.submit(f.fileno(), 0, 1 << 20).result(timeout=30)
            parent_helper = rangehash.helper().pid
            pid = os.fork()
            if pid == 0:  # the child: a helper of its own, the same answers
                got = rangehash.submit(f.fileno(), 0, 1 << 20).result(timeout=30)
                ok = got[0] == hashlib.sha256(open({str(path)!r}, "rb").read()).hexdigest()
                os._exit(0 if ok and rangehash.helper().pid != parent_helper else 3)
            _, status = os.waitpid(pid, 0)
        print(parent_helper, os.waitstatus_to_exitcode(status), flush=True)
        time.sleep(1)  # a forked child that lives on does not keep this helper running
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         timeout=60, check=True)
    helper, status = map(int, out.stdout.split())
    assert status == 0
    assert _gone(helper)


def test_only_layers_in_plain_files_are_read_without_threads(tmp_path, monkeypatch):
    """A docker-archive's plain layers are hashed beside the reader; a store's layers are
    hashed by whoever reads them, so the inspection keeps its reading threads for those."""
    from nbimages import image as image_module
    from nbimages.sources import open_image
    path = _archive(tmp_path, _layers())
    assert all(layer.checked_aside for layer in open_image(f"docker-archive:{path}").layers)
    nbimages.copy(f"docker-archive:{path}", "store:aside")
    monkeypatch.setattr(image_module, "_verified", set())  # as in a new process
    stored = open_image("store:aside").layers
    assert [layer.media_type for layer in stored] == [h.LAYER_TAR] * 3
    assert not any(layer.checked_aside for layer in stored)


@pytest.mark.parametrize("helper", ["1", "0"])
def test_a_layer_hashed_by_the_helper_opens_one_handle(tmp_path, monkeypatch, helper):
    """The second handle, which a thread hashing the layer here reads, is opened only when
    that thread runs: layers read ahead or still being checked hold one handle each."""
    from nbimages import image as image_module
    from nbimages.oci.fileslice import FileSlice
    from nbimages.sources import open_image
    monkeypatch.setenv("NBIMAGES_HASH_HELPER", helper)
    monkeypatch.setattr(image_module, "_verified", set())
    image = open_image(f"docker-archive:{_archive(tmp_path, _layers())}")
    opened = []
    real = FileSlice.__init__
    monkeypatch.setattr(FileSlice, "__init__", lambda self, *a: opened.append(a) or real(self, *a))
    tars = [image.layer_tar(i) for i in range(3)]
    assert [tar.read(lambda stream: stream.read(5)) for tar in tars] == [b"data/"] * 3
    for tar in tars:
        tar.check()
    assert all(layer.verified for layer in image.layers)
    assert len(opened) == (3 if helper == "1" else 6)


def test_opening_a_docker_archive_reads_a_few_bytes_of_each_layer(tmp_path, monkeypatch):
    """Telling a plain layer from a compressed one takes its first bytes, not a buffer's
    worth (1 MiB each: 100 MB of reads for 100 layers on a cold cache)."""
    from nbimages.oci.fileslice import FileSlice
    from nbimages.sources import open_image
    path = _archive(tmp_path, _layers())
    read = []
    real = FileSlice.readinto
    monkeypatch.setattr(FileSlice, "readinto",
                        lambda self, b: read.append(real(self, b)) or read[-1])
    image = open_image(f"docker-archive:{path}")
    assert len(image.layers) == 3 and sum(read) < 64 << 10
