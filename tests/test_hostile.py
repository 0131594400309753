"""Hostile input, written by the tests: what is inspected is what an engine would run, and
damaged or crafted images end in one clear error, never a traceback or a half-written file."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import zstandard

import hostile as h
import nbimages
from bases import unavailable
from conftest import ROOT
from nbimages import errors
from nbimages.sources import open_image, save

BENIGN = h.layer({"etc/motd": b"welcome\n"})
EVIL = h.layer({"etc/motd": b"welcome\n", "usr/bin/backdoor": b"#!/bin/sh\nnc -e sh\n"})


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m nbimages ARGS` as a user runs it; output kept as bytes."""
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "nbimages", *args], capture_output=True,
                          env=full, timeout=timeout, cwd=ROOT)


def assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> str:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


# ---------------------------------------------------------------- the two differential archives

def test_global_header_archive_is_refused_by_inspect(tmp_path):
    path = h.two_reading_archive(tmp_path / "global.tar", BENIGN, EVIL)
    # Python's tarfile alone sees only the benign layer under that name...
    with tarfile.open(path) as tf:
        with tf.extractfile("000/layer.tar") as f:
            assert f.read() == BENIGN
    # ...nbimages refuses the archive instead of showing it
    with pytest.raises(errors.InvalidImage, match="global header"):
        nbimages.inspect(f"docker-archive:{path}")
    assert_clean_failure(cli("inspect", f"docker-archive:{path}"), "global header", str(path))


@pytest.mark.engine
def test_the_engine_really_loads_the_evil_layer_of_the_global_header_archive(docker_client, tmp_path):
    """The attack is real: `docker load` of the same bytes ends with the evil diff_id."""
    path = h.two_reading_archive(tmp_path / "global.tar", BENIGN, EVIL)
    with open(path, "rb") as f:
        docker_client.api.load_image(f.read())
    try:
        img = docker_client.images.get("nbtest-hostile17/global:1")
        assert img.attrs["RootFS"]["Layers"] == [h.sha256(EVIL)]
    finally:
        docker_client.images.remove("nbtest-hostile17/global:1", force=True)


def test_diff_id_check_alone_catches_the_benign_layer(tmp_path):
    """Without the global header trick: a docker-archive whose only layer is benign under a
    config naming the evil one fails inspect with the image, the layer and both digests."""
    cfg = h.config([h.sha256(EVIL)])
    name = h.sha256(cfg).split(":")[1] + ".json"
    man = json.dumps([{"Config": name, "RepoTags": [], "Layers": ["0/layer.tar"]}]).encode()
    path = h.raw_tar(tmp_path / "a.tar", [h.member(name, cfg), h.member("0/layer.tar", BENIGN),
                                          h.member("manifest.json", man)])
    with pytest.raises(errors.DigestMismatch) as e:
        nbimages.inspect(f"docker-archive:{path}")
    msg = str(e.value)
    assert f"docker-archive:{path}" in msg and "layer 0" in msg
    assert h.sha256(EVIL) in msg and h.sha256(BENIGN) in msg
    assert e.value.expected == h.sha256(EVIL) and e.value.actual == h.sha256(BENIGN)


def test_archive_whose_index_and_manifest_disagree_is_refused(tmp_path):
    path = h.disagreeing_archive(tmp_path / "d25.tar", BENIGN, EVIL)
    for source in (f"docker-archive:{path}", str(path)):
        with pytest.raises(errors.InvalidImage, match="disagree"):
            nbimages.inspect(source)
    out = tmp_path / "out.tar"
    with pytest.raises(errors.InvalidImage, match="disagree"):
        save(f"docker-archive:{path}", out)
    assert not out.exists()
    assert_clean_failure(cli("copy", f"docker-archive:{path}", "store:stolen"), "disagree")


def _benign_layout_with_evil_config(tmp_path) -> Path:
    """An OCI layout whose manifest names the benign blob, its config the evil diff_id."""
    return h.oci_layout(tmp_path / "lay", [(h.gz(BENIGN), h.LAYER_GZIP)],
                        diff_ids=[h.sha256(EVIL)])


def test_save_and_copy_refuse_a_layer_the_config_does_not_describe(tmp_path):
    layout = _benign_layout_with_evil_config(tmp_path)
    out = tmp_path / "out.tar"
    with pytest.raises(errors.DigestMismatch, match="diff_id"):
        save(f"oci:{layout}", out)
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    with pytest.raises(errors.DigestMismatch, match="layer 0"):
        nbimages.copy(f"oci:{layout}", "store:hostile")
    with pytest.raises(errors.ImageNotFound):
        open_image("store:hostile")
    with pytest.raises(errors.DigestMismatch):
        nbimages.copy(f"oci:{layout}", f"oci:{tmp_path / 'copy'}")
    assert not (tmp_path / "copy").exists()


@pytest.mark.registry
def test_push_refuses_before_sending_anything(tmp_path, registry):
    import requests
    layout = _benign_layout_with_evil_config(tmp_path)
    repo = f"nbtest-hostile17/push-{os.getpid()}"
    with pytest.raises(errors.DigestMismatch, match="diff_id"):
        nbimages.push(f"oci:{layout}", f"{registry}/{repo}:1", progress=False)
    r = requests.get(f"http://{registry}/v2/{repo}/manifests/1", timeout=10)
    assert r.status_code == 404
    blob = h.sha256(h.gz(BENIGN))
    assert requests.head(f"http://{registry}/v2/{repo}/blobs/{blob}", timeout=10).status_code == 404


@pytest.mark.engine
def test_building_on_a_lying_base_is_refused(tmp_path):
    layout = _benign_layout_with_evil_config(tmp_path)
    recipe = nbimages.Recipe(f"oci:{layout}", context=tmp_path)
    recipe.file("/app/x.txt", "x")
    with pytest.raises(errors.DigestMismatch, match="layer 0"):
        recipe.build("nbtest-hostile17/onbase:1")


def test_a_verified_image_is_read_once_per_process(tmp_path):
    """The diff_id is checked while the walk reads the layer; saving afterwards does not
    inflate the layer a second time (the verified pair is remembered)."""
    layout = h.oci_layout(tmp_path / "ok", [(h.gz(EVIL), h.LAYER_GZIP)])
    insp = nbimages.inspect(f"oci:{layout}")
    assert insp.image.layers[0].verified
    assert "/usr/bin/backdoor" in set(insp.files().path)


# ---------------------------------------------------------------- sizes and compression

def test_a_descriptor_size_that_lies_is_refused_before_the_store(tmp_path):
    blob = h.gz(BENIGN)
    layout = h.oci_layout(tmp_path / "lie", [(blob, h.LAYER_GZIP)], sizes=[len(blob) + 100])
    with pytest.raises(errors.DigestMismatch, match=f"manifest says {len(blob) + 100:,}"):
        nbimages.copy(f"oci:{layout}", "store:liar")
    from nbimages.store import default_store
    assert not default_store().has_blob(h.sha256(blob))
    with pytest.raises(errors.DigestMismatch):
        nbimages.inspect(f"oci:{layout}")


def _truncated_gzip() -> bytes:
    return h.gz(EVIL)[:-20]


def _bad_crc_gzip() -> bytes:
    data = bytearray(h.gz(EVIL))
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    return bytes(data)


def _flipped_zstd() -> bytes:
    data = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(EVIL))
    data[len(data) // 2] ^= 0x55
    return bytes(data)


@pytest.mark.parametrize("make,mtype,kind", [(_truncated_gzip, h.LAYER_GZIP, "gzip"),
                                             (_bad_crc_gzip, h.LAYER_GZIP, "gzip"),
                                             (_flipped_zstd, h.LAYER_ZSTD, "zstd")])
def test_damaged_compression_is_one_error(tmp_path, make, mtype, kind):
    blob = make()
    # the descriptor and the diff_id are those of the damaged blob and the intended tar, so
    # the damage is met by the inflater, not by a digest check first
    layout = h.oci_layout(tmp_path / "dmg", [(blob, mtype)], diff_ids=[h.sha256(EVIL)])
    with pytest.raises(errors.InvalidImage, match=f"the {kind} stream is damaged"):
        nbimages.inspect(f"oci:{layout}")
    assert_clean_failure(cli("inspect", f"oci:{layout}", "--files"), "damaged", "Layer 0")


def test_building_on_a_damaged_layer_is_one_error(tmp_path):
    layout = h.oci_layout(tmp_path / "dmg", [(_bad_crc_gzip(), h.LAYER_GZIP)],
                          diff_ids=[h.sha256(EVIL)])
    recipe = nbimages.Recipe(f"oci:{layout}", context=tmp_path)
    recipe.file("/app/x.txt", "x")
    with pytest.raises(errors.NbimagesError, match="damaged"):
        recipe.build("nbtest-hostile17/dmg:1")


# ---------------------------------------------------------------- names

def test_non_utf8_names_print_under_a_strict_utf8_locale(tmp_path):
    # a Latin-1 name, as old tools write it: not valid UTF-8
    ti = tarfile.TarInfo("caf\udce9")
    ti.size = 1
    lay = ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape") + b"x" + bytes(511 + 1024)
    assert b"caf\xe9\x00" in lay
    layout = h.oci_layout(tmp_path / "l1", [(lay, h.LAYER_TAR)])
    env = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PYTHONIOENCODING": ""}
    for view in ("--files", "--sizes"):
        proc = cli("inspect", f"oci:{layout}", view, "--full", env=env)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        if view == "--files":
            assert b"/caf\xe9" in proc.stdout  # the name's own bytes, as `tar tf` prints them


def _latin1_name_layout(directory: Path) -> Path:
    ti = tarfile.TarInfo("caf\udce9")
    ti.size = 1
    lay = ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape") + b"x" + bytes(511 + 1024)
    return h.oci_layout(directory, [(lay, h.LAYER_TAR)])


def test_non_utf8_names_keep_their_bytes_and_display_escaped(tmp_path):
    import pickle
    info = nbimages.inspect(f"oci:{_latin1_name_layout(tmp_path / 'l1')}")
    files = info.files()
    assert list(files.path) == ["/caf\udce9"]  # the exact bytes: os.fsencode gives them back
    assert os.fsencode(files.path[0]) == b"/caf\xe9"
    for shown in (repr(files), files._repr_html_(), repr(files.path), repr(files[files["size"] > 0]),
                  info.sizes(depth=3)._repr_html_(), repr(info.diff(info)), repr(info)):
        shown.encode("utf-8")  # no lone surrogate left to send
    assert "/caf\\xe9" in repr(files) and "/caf\\xe9" in files._repr_html_()
    assert "/caf\\xe9" in repr(files.path)
    again = pickle.loads(pickle.dumps(files))
    assert again.equals(files) and "/caf\\xe9" in repr(again)


def test_non_utf8_names_reach_the_notebook_escaped_through_a_real_kernel(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from test_notebooks import kernel_env
    layout = _latin1_name_layout(tmp_path / "l1")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code) for code in (
        f"import nbimages\ninfo = nbimages.inspect('oci:{layout}')\ninfo.files()",
        "info.files().path",
        "info.sizes(depth=3)",
        f"%load_ext nbimages\n%image files oci:{layout}",
        f"nbimages.explore('oci:{layout}')",
        "import os; os.fsencode(info.files().path[0])")]
    client = NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=False)
    client.execute(env=kernel_env(tmp_path / "iso"), cwd=str(tmp_path))
    for cell in nb.cells[:5]:
        [out] = [o for o in cell.outputs if o.output_type == "execute_result"]
        for mime, text in out.data.items():
            if isinstance(text, str):
                assert "\ufffd" not in text, (cell.source, mime)
                names_files = "sizes" not in cell.source and not (
                    "explore" in cell.source and mime == "text/plain")  # that lists dirs only
                if mime in ("text/plain", "text/html") and names_files:
                    assert "/caf\\xe9" in text, (cell.source, mime, text[:2000])
    assert nb.cells[5].outputs[0].data["text/plain"] == "b'/caf\\xe9'"  # the value kept its bytes


def test_long_names_are_refused_past_path_max_with_bounded_memory(tmp_path):
    """A gzip layer of GNU long names of 16 MiB each (tiny compressed): refused at the first
    header, with the CLI's peak memory measured."""
    out = tmp_path / "bomb.tar"
    big = "a/" * (8 << 20)  # 16 MiB name
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(4):
            ti = tarfile.TarInfo(big + str(i))
            tf.addfile(ti, None)
    blob = h.gz(out.read_bytes())
    assert len(blob) < 400_000
    layout = h.oci_layout(tmp_path / "ln", [(blob, h.LAYER_GZIP)])
    proc = _cli_rss("inspect", f"oci:{layout}")
    assert_clean_failure(proc, "1 MiB")
    assert proc.peak_rss < 120 << 20, proc.peak_rss

    # names just under PATH_MAX are fine, and memory stays proportional to the entries
    names = {f"d/{i:05d}" + "x" * 4000: b"" for i in range(2000)}
    ok = h.oci_layout(tmp_path / "ok", [(h.gz(h.layer(names)), h.LAYER_GZIP)])
    proc = _cli_rss("inspect", f"oci:{ok}")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.peak_rss < 200 << 20, proc.peak_rss
    print(f"peak RSS of inspect over 2,000 names of 4 kB: {proc.peak_rss >> 20} MiB")


@pytest.mark.slow
def test_a_layer_of_legal_long_names_past_the_budget_is_refused_with_bounded_memory(tmp_path):
    """The issue's 4.2 MB gzip layer, with names that are all legal (4,000 bytes, deep
    directories of 250-byte components): past the name budget it is refused, and the peak
    memory of the CLI is measured."""
    part = "n" * 249
    blob = tmp_path / "names.tar.gz"
    with gzip.open(blob, "wb", compresslevel=6) as raw, \
            tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(100_000):
            tf.addfile(tarfile.TarInfo("/".join([part] * 15) + f"/{i:07d}"), None)
    data = blob.read_bytes()
    print(f"{len(data):,} bytes of gzip")
    layout = h.oci_layout(tmp_path / "names", [(data, h.LAYER_GZIP)], diff_ids=["sha256:" + "0" * 64])
    proc = _cli_rss("inspect", f"oci:{layout}")
    assert_clean_failure(proc, "bytes of file names", "NBIMAGES_MAX_NAME_BYTES")
    print(f"peak RSS refusing {len(data) >> 20} MB of gzip'd long names: {proc.peak_rss >> 20} MiB")
    assert proc.peak_rss < 700 << 20


def _cli_rss(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process and record its peak resident memory (bytes)."""
    # VmHWM, not ru_maxrss: Linux keeps the forking parent's (pytest's) peak in ru_maxrss
    # across exec, VmHWM belongs to the new program alone.
    code = ("import re, sys\nfrom nbimages.cli import main\nrc = main(sys.argv[1:])\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "sys.stderr.write(f'\\nPEAK_RSS {hwm}\\n')\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=300,
                          cwd=ROOT)
    tail = proc.stderr.rsplit(b"PEAK_RSS ", 1)
    proc.peak_rss = int(tail[1].split()[0]) * 1024  # type: ignore[attr-defined]
    proc.stderr = tail[0]
    return proc


def test_unsafe_entries_are_reported_not_dropped(tmp_path):
    lower = h.layer({"etc/passwd": b"root:x:0:0\n"}, links={"lnk": "etc"})
    upper_buf = h.layer({"../escape": b"x" * 1000, "lnk/shadow": b"s" * 10},
                        hardlinks={"hl": "missing/target"})
    layout = h.oci_layout(tmp_path / "u", [(lower, h.LAYER_TAR), (upper_buf, h.LAYER_TAR)])
    insp = nbimages.inspect(f"oci:{layout}")
    unsafe = insp.unsafe
    reasons = dict(zip(unsafe.path, unsafe.reason))
    assert reasons["../escape"] == "path escapes the image root"
    assert reasons["lnk/shadow"] == "written through the symlink /lnk"
    assert reasons["hl"] == "hard link to a missing path (extraction fails)"
    # not waste, and its own line in the summary
    assert insp.wasted_bytes == 0 and "/escape" not in set(insp.waste.path)
    assert "WARNING" in repr(insp) and "--unsafe" in repr(insp)
    files = insp.files()
    assert "../escape" in set(files[files.change == "unsafe"].path)
    proc = cli("inspect", f"oci:{layout}", "--unsafe")
    assert proc.returncode == 0 and b"../escape" in proc.stdout and b"lnk/shadow" in proc.stdout


# ---------------------------------------------------------------- outer archives

def test_a_tar_gz_of_zeros_is_refused_at_once(tmp_path):
    bomb = tmp_path / "zeros.tar.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        chunk = bytes(1 << 20)
        for _ in range(64):
            f.write(chunk)
    start = time.monotonic()
    with pytest.raises(errors.InvalidImage) as e:
        nbimages.inspect(str(bomb))
    assert time.monotonic() - start < 5
    assert str(bomb) in str(e.value) and "inflated-" not in str(e.value)
    from nbimages.store import default_store
    assert not list(default_store().tmpdir().iterdir())


def test_a_tar_gz_that_inflates_too_far_is_refused_as_a_bomb(tmp_path, monkeypatch):
    from nbimages.sources import files
    monkeypatch.setattr(files, "MIN_INFLATE", 32 << 20)
    bomb = tmp_path / "big.tar.gz"
    ti = tarfile.TarInfo("manifest.json")
    ti.size = 512 << 20
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(ti.tobuf(tarfile.USTAR_FORMAT))
        chunk = bytes(1 << 20)
        for _ in range(512):
            f.write(chunk)
    with pytest.raises(errors.InvalidImage, match="decompression bomb") as e:
        nbimages.inspect(str(bomb))
    assert str(bomb) in str(e.value)
    from nbimages.store import default_store
    assert not list(default_store().tmpdir().iterdir())


# ---------------------------------------------------------------- platform

def test_platform_is_honoured_or_refused_on_single_manifest_sources(tmp_path):
    layout = h.oci_layout(tmp_path / "p", [(BENIGN, h.LAYER_TAR)], arch="amd64")
    archive = tmp_path / "p.tar"
    save(f"oci:{layout}", archive, format="oci")
    nbimages.copy(f"oci:{layout}", "store:plat")
    for source in (f"oci:{layout}", f"oci-archive:{archive}", "store:plat", str(archive)):
        assert open_image(source, platform="linux/amd64").platform.architecture == "amd64"
        with pytest.raises(errors.PlatformNotFound, match="linux/arm64"):
            open_image(source, platform="linux/arm64")
        with pytest.raises(errors.PlatformNotFound, match="windows/arm64"):
            open_image(source, platform="windows/arm64")
        with pytest.raises(errors.InvalidPlatform):
            open_image(source, platform="linux/")
    proc = cli("inspect", f"oci:{layout}", "--platform", "linux/arm64")
    assert_clean_failure(proc, "PlatformNotFound")


def test_recipe_platform_mismatch_is_refused(tmp_path):
    layout = h.oci_layout(tmp_path / "p", [(BENIGN, h.LAYER_TAR)], arch="amd64")
    recipe = nbimages.Recipe(f"oci:{layout}", context=tmp_path, platform="linux/arm64")
    recipe.file("/x", "x")
    with pytest.raises(errors.PlatformNotFound, match="linux/arm64"):
        recipe.build("nbtest-hostile17/plat:1")
    base = open_image(f"oci:{layout}")
    recipe = nbimages.Recipe(base, context=tmp_path, platform="linux/arm64")
    recipe.file("/x", "x")
    with pytest.raises(errors.PlatformNotFound):
        recipe.build("nbtest-hostile17/plat:1")


@pytest.mark.registry
def test_platform_is_refused_for_a_single_manifest_in_a_registry(tmp_path, registry):
    layout = h.oci_layout(tmp_path / "p", [(h.gz(BENIGN), h.LAYER_GZIP)], arch="amd64")
    ref = f"{registry}/nbtest-hostile17/plat-{os.getpid()}:1"
    nbimages.push(f"oci:{layout}", ref, progress=False)
    assert open_image(f"docker://{ref}", platform="linux/amd64")
    with pytest.raises(errors.PlatformNotFound, match="linux/arm64"):
        open_image(f"docker://{ref}", platform="linux/arm64")


# ---------------------------------------------------------------- registry that hangs

class Silent:
    """Accepts connections on a loopback port and never answers."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def __exit__(self, *exc):
        self._stop = True
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def test_a_hanging_registry_fails_after_the_configured_timeout(monkeypatch, caplog):
    monkeypatch.setenv("NBIMAGES_REGISTRY_RETRIES", "1")
    monkeypatch.setenv("NBIMAGES_REGISTRY_BACKOFF", "0")
    with Silent() as srv:
        monkeypatch.setenv("NBIMAGES_REGISTRY_TIMEOUT", "0.5")
        start = time.monotonic()
        with pytest.raises(errors.RegistryError, match=r"did not answer within 0\.5 s"):
            open_image(f"docker://{srv.address}/x/y:1")
        assert time.monotonic() - start < 5
        assert any("did not answer" in r.getMessage() for r in caplog.records)
        monkeypatch.delenv("NBIMAGES_REGISTRY_TIMEOUT")
        start = time.monotonic()
        with pytest.raises(errors.RegistryError, match=r"within 0\.3 s"):
            nbimages.open_remote(f"{srv.address}/x/y:1", timeout=0.3)
        assert time.monotonic() - start < 5
        proc = cli("inspect", f"docker://{srv.address}/x/y:1",
                   env={"NBIMAGES_REGISTRY_TIMEOUT": "0.5", "NBIMAGES_REGISTRY_RETRIES": "0"},
                   timeout=60)
        assert_clean_failure(proc, "NBIMAGES_REGISTRY_TIMEOUT")


def test_pull_and_push_progress_say_what_they_wait_for_and_how_long(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setenv("NBIMAGES_REGISTRY_RETRIES", "1")
    monkeypatch.setenv("NBIMAGES_REGISTRY_BACKOFF", "0")
    with Silent() as srv:
        # From a shell (plain lines): the wait, then the retry, each said once, then the error.
        proc = cli("pull", f"{srv.address}/x/y:1",
                   env={"NBIMAGES_REGISTRY_TIMEOUT": "2", "NBIMAGES_PROGRESS": "lines"})
        err = assert_clean_failure(proc, "did not answer within 2 s, 2 times")
        waited = f"waiting for the registry {srv.address} (the manifest x/y:1): no answer for 1."
        assert err.count(waited) == 2 and err.count("(gives up after 2 s)") == 2, err
        assert err.count("asking again (attempt 2 of 2)") == 1, err
        assert "stopped after" in err and err.index(waited) < err.index("asking again"), err

        # A push waits in its worker threads (one per blob): each blob's wait is shown.
        layout = h.oci_layout(tmp_path / "layout", [(BENIGN, h.LAYER_TAR)])
        proc = cli("push", f"oci:{layout}", f"{srv.address}/x/y:1",
                   env={"NBIMAGES_REGISTRY_TIMEOUT": "2", "NBIMAGES_PROGRESS": "lines"})
        err = assert_clean_failure(proc, "did not answer within 2 s, 2 times")
        layer_blob = h.sha256(BENIGN).split(":")[1][:12]
        assert f"waiting for the registry {srv.address} (blob {layer_blob}): no answer for 1." \
            in err, err
        assert f"did not answer blob {layer_blob} within 2 s" in err, err

        # With bars (a terminal, or ipywidgets in a kernel) the total bar carries the wait.
        monkeypatch.setattr("nbimages.progress._choose_mode", lambda enabled, stream: "bars")
        with pytest.raises(errors.RegistryError, match=r"within 1\.5 s"):
            nbimages.pull(f"{srv.address}/x/y:1", timeout=1.5)
        shown = capsys.readouterr().err
        assert f"waiting for the registry {srv.address} (the manifest x/y:1)" in shown, shown
        assert "gives up after 1.5 s" in shown and "asking again (attempt 2 of 2)" in shown


# ---------------------------------------------------------------- a full or read-only store

@pytest.fixture
def small_tmpfs(tmp_path):
    """A 6 MiB tmpfs to hold the store (mounting needs root: skipped without it)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode:
        unavailable(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.registry
def test_a_full_store_fails_cleanly_and_the_next_pull_works(small_tmpfs, tmp_path, registry):
    noise = os.urandom(3 << 20)  # incompressible: the layer blob is ~3 MiB
    layout = h.oci_layout(tmp_path / "big", [(h.gz(h.layer({"noise": noise})), h.LAYER_GZIP)])
    ref = f"{registry}/nbtest-hostile17/big-{os.getpid()}:1"
    nbimages.push(f"oci:{layout}", ref, progress=False)
    home = small_tmpfs / "home"
    env = {"NBIMAGES_HOME": str(home)}
    filler = small_tmpfs / "filler"
    filler.write_bytes(bytes(4 << 20))

    err = assert_clean_failure(cli("pull", ref, env=env), "no space is left", "NBIMAGES_HOME")
    assert str(home) in err
    assert not list(home.rglob("*.partial")) and not list(home.rglob(".tmp-*"))

    filler.unlink()  # space freed: the same pull now works
    proc = cli("pull", ref, env=env)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    proc = cli("inspect", f"store:{ref}", "--files", env=env)
    assert proc.returncode == 0 and b"/noise" in proc.stdout

    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    assert_clean_failure(cli("copy", f"oci:{layout}", "store:again", env=env), "read-only")


# ---------------------------------------------------------------- a store owned by someone else

# An unprivileged user (nobody) that may read everything (CAP_DAC_READ_SEARCH, so it can run
# this tree's interpreter wherever it lives) but write only where permissions let it.
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]


def cli_as_nobody(*args: str, home: Path, store: Path | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NBIMAGES_HOME"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), NBIMAGES_PROGRESS="lines")
    if store is not None:
        env["NBIMAGES_HOME"] = str(store)
    return subprocess.run([*AS_NOBODY, sys.executable, "-m", "nbimages", *args],
                          capture_output=True, env=env, timeout=120, cwd=ROOT)


def assert_permission_paragraph(proc: subprocess.CompletedProcess, place: Path) -> None:
    err = assert_clean_failure(proc, "permission is denied", "NBIMAGES_HOME")
    lines = [line for line in err.splitlines() if line.startswith("nbimages:")]
    assert len(lines) == 1 and str(place) in lines[0], err


@pytest.mark.registry
def test_a_store_owned_by_someone_else_is_one_paragraph_and_stays_usable(tmp_path, registry):
    if os.geteuid() != 0:
        unavailable("switching to another user needs root")
    base = tmp_path / "perm"
    home = base / "home"            # root's, mode 0755: nobody may read it, not write it
    store = home / "store"
    out = base / "out"              # where nobody may write
    for d in (base, home, out):
        d.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)
    layout = h.oci_layout(base / "lay", [(h.gz(h.layer({"etc/motd": b"hi\n"})), h.LAYER_GZIP)])
    ref = f"{registry}/nbtest-hostile17/perm-{os.getpid()}:1"
    nbimages.push(f"oci:{layout}", ref, progress=False)
    gz_tar = base / "img.tar.gz"
    gz_tar.write_bytes(gzip.compress((save(f"oci:{layout}", base / "img.tar")).read_bytes()))
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a /a\n")
    (ctx / "a").write_text("a\n")
    owner = {"NBIMAGES_HOME": str(store)}
    proc = cli("pull", ref, env=owner)  # the owner's store, with the image in it
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")

    for args in (("pull", ref), ("build", str(ctx), "-t", "nbtest-hostile17/perm-b:1"),
                 ("copy", f"oci:{layout}", "store:nbtest-hostile17/perm-c:1"),
                 ("inspect", str(gz_tar)), ("inspect", f"docker-archive:{gz_tar}", "--files")):
        assert_permission_paragraph(cli_as_nobody(*args, home=home, store=store), home)
    err = assert_clean_failure(cli_as_nobody("save", ref, str(home / "x.tar"), home=home,
                                             store=store), "Choose a folder you can write to")
    assert f"cannot write {home / 'x.tar'}: Permission denied" in err
    # Reading someone else's store is allowed: a save from it to a place of one's own works.
    proc = cli_as_nobody("save", f"store:{ref}", str(out / "mine.tar"), home=home, store=store)
    assert proc.returncode == 0 and (out / "mine.tar").stat().st_uid == 65534, proc.stderr
    # Without a store of one's own, files and layouts still open (they need no store) ...
    proc = cli_as_nobody("save", f"oci:{layout}", str(out / "nostore.tar"), home=home, store=None)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # ... and what needs the store names the default one under HOME.
    assert_permission_paragraph(cli_as_nobody("pull", ref, home=home, store=None), home / ".cache")
    assert not (home / ".cache").exists()

    # The owner's store is untouched: nothing of nobody's in it, sound, and it still pulls.
    assert all(p.stat().st_uid == 0 for p in store.rglob("*"))
    assert not list(store.rglob("*.partial")) and not list(store.rglob(".tmp-*"))
    proc = cli("store", "check", env=owner)
    assert proc.returncode == 0 and b"sound" in proc.stdout, proc.stderr.decode(errors="replace")
    proc = cli("copy", f"oci:{layout}", "store:nbtest-hostile17/perm-c:1", env=owner)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def test_save_to_a_transport_name_is_refused_not_written_under_the_working_directory(
        tmp_path, monkeypatch):
    layout = h.oci_layout(tmp_path / "ok", [(BENIGN, h.LAYER_TAR)])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    target = tmp_path / "out" / "x.tar"
    with pytest.raises(errors.UnknownTransport, match=r"--format oci .*nbimages copy SOURCE"):
        save(f"oci:{layout}", f"oci-archive:{target}", format="oci")
    proc = cli("save", f"oci:{layout}", f"docker-archive:{target}")
    assert_clean_failure(proc, f"Give the path alone ('{target}')")
    assert not list(work.iterdir()) and not target.parent.exists()


# ---------------------------------------------------------------- the same in the notebook

def test_magics_show_hostile_input_as_one_red_paragraph(ip, capsys, tmp_path):
    layout = h.oci_layout(tmp_path / "dmg", [(_bad_crc_gzip(), h.LAYER_GZIP)],
                          diff_ids=[h.sha256(EVIL)])
    liar = _benign_layout_with_evil_config(tmp_path)
    for line, error in ((f"%image files oci:{layout}", errors.InvalidImage),
                        (f"%image layers oci:{liar}", errors.DigestMismatch),
                        (f"%image unsafe oci:{liar} ", errors.DigestMismatch)):
        result = ip.run_cell(line)
        text = "".join(capsys.readouterr())
        assert isinstance(result.error_in_exec, error), line
        assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text


def test_magics_show_a_full_disk_as_one_red_paragraph(ip, capsys, tmp_path, monkeypatch):
    import errno
    from nbimages.oci.layout import OCILayout

    def full(self, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "blobs"))
    monkeypatch.setattr(OCILayout, "_write_blob", full)
    layout = h.oci_layout(tmp_path / "ok", [(BENIGN, h.LAYER_TAR)])
    result = ip.run_cell(f"%image copy-image oci:{layout} store:full")
    text = "".join(capsys.readouterr())
    assert isinstance(result.error_in_exec, errors.OSFailure)
    assert "no space is left" in text and "NBIMAGES_HOME" in text and "Traceback" not in text


def test_layers_the_builder_wrote_need_no_second_reading(tmp_path):
    """The builder hashes tar and blob while writing a layer: save and push trust that pair
    and do not inflate the layer again to check it."""
    recipe = nbimages.Recipe("scratch", context=tmp_path)
    recipe.file("/app/x.txt", "x")
    img = recipe.build("nbtest-hostile17/built:1")
    assert img.layers and all(layer.verified for layer in img.layers)
