"""Store commands: df, prune and check [--repair], in Python, the CLI and the magic; prune and
check are safe against other processes building or pulling into the same store, and against a
prune killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import filelock
import pytest

import nbimages
from nbimages.store import Store

from registry_servers import Distribution, image_of_tars, tar_of

ROOT = Path(__file__).resolve().parent.parent
UNIQUE = uuid.uuid4().hex[:8]


def _push_image(registry: str, repo: str, layers: list[bytes], tmp: Path, *, gz: bool = True) -> str:
    """An image of the given layer tars pushed to `registry`; returns its reference."""
    image, _ = image_of_tars(Store(tmp / f"src-{uuid.uuid4().hex[:6]}"), layers, gz=gz)
    ref = f"{registry}/{repo}"
    nbimages.push(image, ref, progress=False)
    return ref


def _cli(*args: str, home: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBIMAGES_PROGRESS": "0"}
    if home is not None:
        env["NBIMAGES_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "nbimages", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _df(home: Path) -> dict:
    return json.loads(_cli("store", "df", "--json", home=home).stdout)


def _blobs(store: Store) -> set[str]:
    return {f"sha256:{p.name}" for p in (store.path / "blobs" / "sha256").iterdir()
            if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def two_images(registry, tmp_path_factory) -> tuple[str, str]:
    """Two images in the real registry sharing a base layer, each with a layer of its own."""
    tmp = tmp_path_factory.mktemp("two")
    base = tar_of("base.bin", os.urandom(400_000))
    a = _push_image(registry, f"nbt10/two-a-{UNIQUE}:1", [base, tar_of("a.bin", os.urandom(300_000))], tmp)
    b = _push_image(registry, f"nbt10/two-b-{UNIQUE}:1", [base, tar_of("b.bin", os.urandom(200_000))], tmp)
    return a, b


# ------------------------------------------------------------------------------------ df / prune

def test_prune_after_rm_frees_exactly_the_blobs_only_that_image_used(two_images, _isolated_home):
    a, b = two_images
    store = Store(_isolated_home)
    img_a = nbimages.pull(a, progress=False)
    img_b = nbimages.pull(b, progress=False)
    before = _df(_isolated_home)
    rows = {f"{r['repository']}:{r['tag']}": r for r in before["images"]}
    only_b = rows[b]["unique"]
    assert rows[a]["shared"] == rows[b]["shared"] == img_a.layers[0].size  # the base layer
    b_only_blobs = {img_b.digest, img_b.manifest.config.digest, img_b.layers[1].digest}
    assert only_b == sum(store.blob_path(d).stat().st_size for d in b_only_blobs)

    assert "removed" in _cli("rm", b, "--where", "store", home=_isolated_home).stdout
    dry = json.loads(_cli("store", "prune", "--dry-run", "--json", home=_isolated_home).stdout)
    assert dry["freed"] == only_b and _blobs(store) >= b_only_blobs  # a dry run removes nothing
    pruned = json.loads(_cli("store", "prune", "--json", home=_isolated_home).stdout)
    assert pruned["freed"] == only_b
    assert {r["what"] for r in pruned["removed"] if r["kind"] == "blob"} == b_only_blobs
    assert not (_blobs(store) & b_only_blobs)

    after = _df(_isolated_home)
    assert before["total"] - after["total"] == only_b
    assert [r["size"] for r in after["images"]] == [rows[a]["size"]]
    assert _cli("store", "check", home=_isolated_home).stdout.endswith("the store is sound.\n")
    assert nbimages.store_df().images["repository"].tolist() == [a.rsplit(":", 1)[0]]


def test_prune_removes_dangling_builds_and_keeps_the_build_cache_unless_all(_isolated_home):
    r = nbimages.Recipe("scratch").file("/a", "a\n")
    tagged = r.build("nbt10/kept:1")
    r.file("/b", os.urandom(50_000))
    dangling = r.build()  # untagged: a dangling build result
    store = Store(_isolated_home)
    report = nbimages.store_prune()
    assert list(report.removed["kind"]).count("dangling image") == 1
    assert dangling.digest not in _blobs(store)  # its manifest went
    assert dangling.layers[-1].digest in _blobs(store)  # its layer stays: the build cache has it
    assert nbimages.store_df().summary.set_index("type").loc["build cache", "reclaimable"] > 0
    report = nbimages.store_prune(all=True)
    assert dangling.layers[-1].digest in set(report.removed["what"])
    assert tagged.digest in _blobs(store)
    assert store.get("nbt10/kept:1").digest == tagged.digest
    assert nbimages.store_check().ok


def test_prune_older_than_keeps_newer_leftovers(_isolated_home):
    store = Store(_isolated_home)
    fresh = store.write_blob(b"fresh unreferenced blob")
    stale = store.write_blob(b"stale unreferenced blob")
    week_ago = time.time() - 8 * 86400
    os.utime(store.blob_path(stale.digest), (week_ago, week_ago))
    report = nbimages.store_prune(older_than="7d")
    assert set(report.removed["what"]) == {stale.digest}
    assert store.has_blob(fresh.digest)
    with pytest.raises(nbimages.errors.NbimagesError, match="not a duration"):
        nbimages.store_prune(older_than="a week")


def test_prune_removes_stale_partials_and_temporaries_but_not_live_ones(_isolated_home):
    store = Store(_isolated_home)
    downloads = store.tmpdir() / "downloads"
    downloads.mkdir()
    stale, live, fresh = (downloads / f"sha256-{c * 64}.partial" for c in "abc")
    for p in (stale, live, fresh):
        p.write_bytes(b"x" * 1000)
    crashed_export = store.tmpdir() / "docker-export-123.tar"
    crashed_export.write_bytes(b"y" * 2000)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dead_owner = store.tmpdir() / f"p{dead}-inflated-x.tar"  # Store.tmpfile of a process gone
    dead_owner.write_bytes(b"z" * 100)
    fd, mine = store.tmpfile("daemon-abc-", ".tar")  # this process's export, kept for its life
    os.close(fd)
    two_hours_ago = time.time() - 7200
    for p in (stale, live, crashed_export, dead_owner, Path(mine)):
        os.utime(p, (two_hours_ago, two_hours_ago))
    held = filelock.FileLock(str(live) + ".lock")
    held.acquire()  # another download is writing this one right now
    try:
        usage = nbimages.store_df().summary.set_index("type")
        assert usage.loc["partial downloads", "count"] == 3
        report = nbimages.store_prune()
    finally:
        held.release()
    assert set(report.removed["kind"]) == {"partial download", "temporary"}
    assert not stale.exists() and not crashed_export.exists() and not dead_owner.exists()
    assert live.exists() and fresh.exists()  # in use, and too recent to call stale
    assert Path(mine).exists()  # its process (this one) still runs


# --------------------------------------------------------------------------------------- check

def _flip(store: Store, digest: str) -> None:
    path = store.blob_path(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_check_repairs_a_damaged_layer_from_the_registry_it_was_pulled_from(two_images, _isolated_home):
    a, _b = two_images
    store = Store(_isolated_home)
    img = nbimages.pull(a, progress=False)
    _flip(store, img.layers[1].digest)
    done = _cli("store", "check", home=_isolated_home, check=False)
    assert done.returncode == 1
    assert "damaged" in done.stdout and img.layers[1].digest in done.stdout
    assert "nbimages store check --repair" in done.stdout
    done = _cli("store", "check", "--repair", "--json", home=_isolated_home)
    report = json.loads(done.stdout)
    assert report["ok"] and report["problems"][0]["action"] == f"repaired from docker://{a}"
    assert _cli("store", "check", home=_isolated_home).stdout.endswith("the store is sound.\n")
    nbimages.inspect(f"store:{a}").files()  # reads every layer, verified


def test_check_repairs_from_a_tar_still_present(_isolated_home, tmp_path):
    name = f"nbt10/from-tar-{UNIQUE}:1"
    r = nbimages.Recipe("scratch").file("/data.bin", os.urandom(100_000))
    tar = r.build(name).save(tmp_path / "app.tar")
    fresh = tmp_path / "fresh-home"
    _cli("copy", f"docker-archive:{tar}", f"store:{name}", home=fresh)
    store = Store(fresh)
    digest = store.get(name).layers[0].digest
    _flip(store, digest)
    report = json.loads(_cli("store", "check", "--repair", "--json", home=fresh).stdout)
    assert report["problems"][0]["action"] == f"repaired from docker-archive:{tar}"
    assert _cli("store", "check", home=fresh).returncode == 0


def test_check_repair_removes_an_image_no_source_has_and_says_so(_isolated_home):
    img = nbimages.Recipe("scratch").file("/only-here", os.urandom(10_000)).build("nbt10/lost:1")
    store = Store(_isolated_home)
    _flip(store, img.layers[0].digest)
    report = nbimages.store_check(repair=True)
    row = report.problems.iloc[0]
    assert row["problem"] == "damaged" and row["images"] == "nbt10/lost:1"
    assert row["action"].startswith("removed image nbt10/lost:1: no source had the blob")
    assert report.ok
    with pytest.raises(nbimages.errors.ImageNotFound):
        store.get("nbt10/lost:1")
    assert nbimages.store_check().ok


def test_magic_store_commands_return_the_same_reports(ip, _isolated_home):
    nbimages.Recipe("scratch").file("/m", "m\n").build("nbt10/magic:1")
    usage = ip.run_line_magic("image", "store df")
    assert list(usage.images["repository"]) == ["nbt10/magic"]
    assert ip.run_line_magic("image", "store prune --dry-run").dry_run
    assert ip.run_line_magic("image", "store check").ok
    assert ip.run_line_magic("image", "rm nbt10/magic:1 --where store") == ["store"]
    assert "nbt10/magic" not in set(ip.run_line_magic("image", "images --engine embedded")["repository"])


# --------------------------------------------------------------------------------- concurrency

def test_prune_racing_a_300_mb_pull_in_another_process_leaves_both_consistent(tmp_path):
    with Distribution(tmp_path / "registry") as reg:
        big = tar_of("big.bin", os.urandom(300_000_000))
        ref = _push_image(reg.address, f"nbt10/big-{UNIQUE}:1", [big], tmp_path, gz=False)
        del big
        home = tmp_path / "home"
        env = {**os.environ, "NBIMAGES_HOME": str(home), "NBIMAGES_PROGRESS": "0"}
        puller = subprocess.Popen([sys.executable, "-m", "nbimages", "pull", ref], env=env,
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        downloads = home / "tmp" / "downloads"
        deadline = time.monotonic() + 60
        while not any(downloads.glob("*.partial")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert puller.poll() is None, "the pull ended before the prune could race it"
        pruners = [subprocess.Popen([sys.executable, "-m", "nbimages", "store", "prune", "--all",
                                     "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(2)]
        out, err = puller.communicate(timeout=600)
        assert puller.returncode == 0, err
        removed = set()
        for p in pruners:
            p_out, p_err = p.communicate(timeout=600)
            assert p.returncode == 0, p_err
            removed |= {r["what"] for r in json.loads(p_out)["removed"]}
        store = Store(home)
        assert _cli("store", "check", home=home).stdout.endswith("the store is sound.\n")
        image = store.get(ref)
        mine = {image.digest, image.manifest.config.digest, image.layers[0].digest}
        assert not removed & mine
        assert not [w for w in removed if w.startswith("tmp/downloads/")]  # the live partial
        with image.layers[0].open_blob() as f:  # verified as it streams
            while f.read(1 << 20):
                pass
        assert json.loads(_cli("store", "prune", "--json", home=home).stdout)["freed"] == 0


def _python_in_background(home: Path, done: Path, body: str) -> subprocess.Popen:
    """A process running `body` (Python, `os` and `nbimages` imported) into the store at
    `home`, touching `done` when it finishes."""
    env = {**os.environ, "NBIMAGES_HOME": str(home), "NBIMAGES_PROGRESS": "0"}
    script = f"import os, pathlib, nbimages\n{body}pathlib.Path({str(done)!r}).touch()\n"
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_builds_racing_prunes_in_other_processes_are_all_complete(_isolated_home, tmp_path):
    done = tmp_path / "builds-done"
    pruner = _python_in_background(_isolated_home, tmp_path / "never", (
        "n = 0\n"
        f"while not pathlib.Path({str(done)!r}).exists():\n"
        "    nbimages.store_prune(all=True)\n"
        "    n += 1\n"
        "print(n)\n"))
    builder = _python_in_background(_isolated_home, done, (
        "for i in range(40):\n"
        "    r = nbimages.Recipe('scratch').file('/n', str(i)).file('/r', os.urandom(500_000))\n"
        "    r.build(f'nbt10/race:{i}')\n"
        "    r.file('/x', 'dangling').build()\n"))
    assert builder.wait(600) == 0, builder.stderr.read()
    out, err = pruner.communicate(timeout=600)
    assert pruner.returncode == 0, err
    assert int(out) >= 5, "the prunes did not overlap the builds"
    store = Store(_isolated_home)
    for i in range(40):
        files = nbimages.inspect(store.get(f"nbt10/race:{i}")).files()
        assert {"/n", "/r"} <= set(files["path"])
    assert nbimages.store_check().ok


def test_a_prune_killed_with_sigkill_leaves_a_store_that_check_passes(_isolated_home):
    store = Store(_isolated_home)
    kept = nbimages.Recipe("scratch").file("/keep", os.urandom(20_000)).build("nbt10/keep:1")
    env = {**os.environ, "NBIMAGES_HOME": str(_isolated_home)}
    killed_mid_way = 0
    for attempt in range(6):
        r = nbimages.Recipe("scratch")
        for i in range(40):
            r.file(f"/f{i}", f"{attempt}-{i}")
        r.build(f"nbt10/gone-{attempt}:1")
        store.untag(f"nbt10/gone-{attempt}:1")
        for i in range(4000):
            store.write_blob(f"orphan {attempt} {i}".encode())
        before = len(_blobs(store))
        child = subprocess.Popen([sys.executable, "-m", "nbimages", "store", "prune", "--all"],
                                 env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        while child.poll() is None and len(_blobs(store)) >= before:
            time.sleep(0.002)
        if child.poll() is None:
            killed_mid_way += 1
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert nbimages.store_check().ok
        assert store.get("nbt10/keep:1").digest == kept.digest
    assert killed_mid_way, "the prune always finished before it could be killed"
    nbimages.store_prune(all=True)
    assert nbimages.store_check().ok and _blobs(store) == {
        kept.digest, kept.manifest.config.digest, kept.layers[0].digest}


def test_check_repairs_a_built_images_base_layer_from_the_bases_registry(busybox_in_registry,
                                                                         _isolated_home):
    base = f"docker://{busybox_in_registry}"
    img = nbimages.Recipe(base).file("/app", "x\n").build("nbt10/on-base:1")
    nbimages.store_prune()  # the base's own manifest is unreferenced: the origin must outlive it
    store = Store(_isolated_home)
    _flip(store, img.layers[0].digest)
    report = nbimages.store_check(repair=True)
    assert report.problems["action"].tolist() == [f"repaired from {base}"]
    assert nbimages.store_check().ok


def test_a_prune_from_inside_this_process_s_own_build_is_refused_not_deadlocked(_isolated_home):
    with Store(_isolated_home).writing():
        with pytest.raises(nbimages.errors.NbimagesError, match="cannot be pruned while this process"):
            nbimages.store_prune(wait=5)
    assert nbimages.store_prune(wait=5).freed == 0


def test_checks_racing_builds_in_another_process_find_nothing_wrong(_isolated_home, tmp_path):
    done = tmp_path / "builds-done"
    builder = _python_in_background(_isolated_home, done, (
        "for i in range(60):\n"
        "    nbimages.Recipe('scratch').file('/r', os.urandom(1_000_000)).build(f'nbt10/c:{i}')\n"))
    seen = set()  # how many blobs each check found: checks that overlapped the builds differ
    while not done.exists() and builder.poll() is None:
        report = nbimages.store_check()
        assert report.ok, repr(report)
        seen.add(report.checked)
    assert builder.wait(600) == 0, builder.stderr.read()
    assert len(seen - {0}) >= 2, "no check overlapped the builds"
    assert nbimages.store_check().ok and len(nbimages.store_df().images) == 60
