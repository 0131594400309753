"""The embedded builder: reproducible digests, cache, store safety, lower-layer rules (issue 3).

No engine needed here; tests/test_build_interop.py checks the results with skopeo, umoci and
docker.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

import nbimages
from nbimages.builder.steps import Step
from nbimages.errors import BuildError, NbimagesError
from nbimages.oci import canonical, compressor as cz, mediatypes as mt
from nbimages.oci.descriptor import Descriptor
from nbimages.oci.layout import OCILayout
from nbimages.oci.manifest import Manifest
from nbimages.oci.tarwriter import LayerTree, iter_tar
from nbimages.store import Store, default_store


# ---- helpers

def make_context(root: Path, *, umask: int = 0o022, stamp: int = 1000) -> Path:
    old = os.umask(umask)
    try:
        (root / "data" / "sub").mkdir(parents=True)
        (root / "data" / "a.csv").write_text("x,y\n1,2\n")
        (root / "data" / "sub" / "b.txt").write_text("bee\n")
        (root / "run.sh").write_text("#!/bin/sh\necho run\n")
        os.chmod(root / "run.sh", 0o777 & ~umask)
        for p in root.rglob("*"):
            os.utime(p, (stamp, stamp))
    finally:
        os.umask(old)
    return root


def make_base(path: Path, tree: LayerTree, tag: str = "base", env: list[str] | None = None
              ) -> str:
    """An OCI layout holding a one-layer image made from `tree`; returns its source string."""
    layout = OCILayout(path, create=True)
    out = bytearray()
    pipe = cz.LayerPipeline(cz.get("zlib"), out.extend)
    for chunk in iter_tar(tree.entries(), 0):
        pipe.write(chunk)
    res = pipe.close()
    layout.write_blob(bytes(out), res.digest)
    config = canonical.dumps({"architecture": "amd64", "os": "linux",
                              "config": {"Env": env or ["PATH=/usr/bin:/bin"], "Cmd": ["sh"]},
                              "rootfs": {"type": "layers", "diff_ids": [res.diff_id]},
                              "history": [{"created_by": "test base"}]})
    cdesc = layout.write_blob(config, nbimages_digest(config), mt.OCI_CONFIG)
    man = Manifest.build(Descriptor(mt.OCI_CONFIG, cdesc.digest, len(config)),
                         [Descriptor(res.media_type, res.digest, res.size)])
    layout.write_blob(man.raw, man.digest)
    layout.set_ref(tag, man.descriptor())
    return f"oci:{path}:{tag}"


def nbimages_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_members(image, index: int) -> dict[str, tarfile.TarInfo]:
    with image.layers[index].open_tar() as f:
        data = f.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def snapshot(home: Path) -> dict[str, str]:
    """Every file under the store home (but its lock files) with its content hash."""
    out = {}
    for p in sorted(home.rglob("*")):
        if p.is_file() and not p.name.endswith(".lock"):
            out[str(p.relative_to(home))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def sample_recipe(context: Path, base: str = "scratch") -> nbimages.Recipe:
    r = nbimages.Recipe(base, context=context)
    r.file("/app/clean.py", "import sys\nprint('clean', sys.argv)\n")
    r.copy("data/", "/data/")
    r.copy("run.sh", "/usr/local/bin/")
    r.env(PYTHONUNBUFFERED="1", LANG="C.UTF-8")
    r.workdir("/app")
    r.user("1000")
    r.label(org="nbimages-tests")
    r.expose(8888)
    r.remove("/tmp/cache")
    r.cmd(["python", "/app/clean.py"])
    return r


# ---- reproducibility

BUILD_SCRIPT = r"""
import json, os, sys
os.umask(int(sys.argv[2], 8))
sys.path.insert(0, sys.argv[3])
from test_build import sample_recipe
from pathlib import Path
img = sample_recipe(Path(sys.argv[1])).build("handout:1")
print(json.dumps({"digest": img.digest, "id": img.id, "diff_ids": img.diff_ids,
                  "layers": [l.digest for l in img.layers]}))
"""


def test_same_recipe_in_two_empty_stores_at_different_times_and_umasks_gives_same_digest(tmp_path):
    results = []
    for n, umask in ((1, 0o022), (2, 0o077)):
        ctx = make_context(tmp_path / f"ctx{n}", umask=umask, stamp=1000 * n)
        env = {**os.environ, "NBIMAGES_HOME": str(tmp_path / f"home{n}")}
        env.pop("SOURCE_DATE_EPOCH", None)
        out = subprocess.run([sys.executable, "-c", BUILD_SCRIPT, str(ctx), oct(umask),
                              str(Path(__file__).parent)], env=env, check=True,
                             capture_output=True, text=True, cwd=tmp_path)
        results.append(json.loads(out.stdout))
        if n == 1:
            time.sleep(1.1)
    assert results[0] == results[1]
    assert len(results[0]["diff_ids"]) == 4


def test_image_config_is_canonical_and_dated_from_the_epoch(tmp_path):
    img = sample_recipe(make_context(tmp_path / "ctx")).build("t:1")
    assert img.config_bytes == canonical.dumps(json.loads(img.config_bytes))
    assert img.config["created"] == "1970-01-01T00:00:00Z"
    assert {h["created"] for h in img.config["history"]} == {"1970-01-01T00:00:00Z"}
    assert [h.get("empty_layer", False) for h in img.config["history"]] == \
        [False, False, False, True, True, True, True, True, False, True]
    assert not any("nbimages " + nbimages.__version__ in h["created_by"]
                   for h in img.config["history"])
    c = img.config["config"]
    assert c["Env"] == ["PYTHONUNBUFFERED=1", "LANG=C.UTF-8"]
    assert (c["WorkingDir"], c["User"], c["Cmd"]) == ("/app", "1000", ["python", "/app/clean.py"])
    assert c["ExposedPorts"] == {"8888/tcp": {}} and c["Labels"] == {"org": "nbimages-tests"}


def test_source_date_epoch_moves_created_dates_and_file_times(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    r = nbimages.Recipe("scratch")
    r.file("/a.txt", "a")
    img = r.build("t:1")
    assert img.config["created"] == "2023-11-14T22:13:20Z"
    assert layer_members(img, 0)["a.txt"].mtime == 1700000000


def test_compressor_is_in_the_manifest_but_not_in_config_or_diff_ids(tmp_path):
    ctx = make_context(tmp_path / "ctx")
    a = sample_recipe(ctx).build("a:1")
    b = sample_recipe(ctx).build("b:1", compression="zlib")
    assert a.id == b.id and a.diff_ids == b.diff_ids
    assert a.digest != b.digest
    assert a.manifest.annotations[cz.COMPRESSOR_ANNOTATION] == cz.DEFAULT.ident
    assert b.manifest.annotations[cz.COMPRESSOR_ANNOTATION].startswith("gzip zlib-")


# ---- cache

def test_changing_the_last_step_rebuilds_one_layer(tmp_path):
    ctx = make_context(tmp_path / "ctx")
    r = sample_recipe(ctx)
    r.file("/app/last.txt", "one")
    first = r.build("t:1").build_report
    assert {row["cache"] for row in first if row["layer"]} == {"rebuilt"}
    r.steps[-1] = Recipe_step("file", "/app/last.txt", "two")
    second = r.build("t:2").build_report
    rebuilt = [row["step"] for row in second if row["cache"] == "rebuilt"]
    assert rebuilt == [len(r.steps)]
    assert [row["cache"] for row in second if row["layer"]][:-1] == ["hit"] * 4


def Recipe_step(kind, *args, **kw) -> Step:
    return nbimages.Recipe.step(kind, *args, **kw)


def test_no_change_rebuild_hits_every_layer_and_gives_the_same_digest(tmp_path):
    r = sample_recipe(make_context(tmp_path / "ctx"))
    a = r.build("t:1")
    b = r.build("t:1")
    assert a.digest == b.digest
    assert {row["cache"] for row in b.build_report} == {"hit", "config"}


def test_changing_an_early_step_reuses_later_layers_that_do_not_depend_on_it(tmp_path):
    ctx = make_context(tmp_path / "ctx")
    r = sample_recipe(ctx)
    r.build("t:1")
    r.steps[0] = Recipe_step("file", "/app/clean.py", "print('changed')\n")
    report = r.build("t:2").build_report
    assert [row["cache"] for row in report if row["layer"]] == ["rebuilt", "hit", "hit", "hit"]


def test_a_changed_copy_source_rebuilds_that_layer(tmp_path):
    ctx = make_context(tmp_path / "ctx")
    r = sample_recipe(ctx)
    r.build("t:1")
    (ctx / "data" / "a.csv").write_text("x,y\n3,4\n")
    report = r.build("t:1").build_report
    assert [row["cache"] for row in report if row["layer"]] == ["hit", "rebuilt", "hit", "hit"]


def test_cache_survives_a_new_process_via_the_file_under_the_store_home(tmp_path):
    r = sample_recipe(make_context(tmp_path / "ctx"))
    r.build("t:1")
    cache = json.loads((default_store().home / "build-cache.json").read_text())
    assert len(cache["layers"]) == 4
    r2 = sample_recipe(r.context)
    assert {row["cache"] for row in r2.build("t:1").build_report} == {"hit", "config"}


# ---- store safety

def test_failed_build_leaves_the_store_unchanged(tmp_path, monkeypatch):
    home = default_store().home
    r = sample_recipe(make_context(tmp_path / "ctx"))
    r.build("t:1")
    before = snapshot(home)
    r.file("/app/new.txt", "new layer that must not appear")
    r.copy("missing.txt", "/x")
    with pytest.raises(BuildError, match="missing.txt"):
        r.build("t:2")
    assert snapshot(home) == before
    assert list((home / "tmp").iterdir()) == []


def test_pip_failure_after_new_layers_leaves_the_store_unchanged(tmp_path, monkeypatch):
    def install_layer_tree(base, requirements, dest, *, index_url=None, find_links=None, store=None):
        raise BuildError(f"no wheel for {requirements[0]}")
    monkeypatch.setattr("nbimages.builder.embedded.install_layer_tree", install_layer_tree)
    home = default_store().home
    r = nbimages.Recipe("scratch")
    r.file("/a.txt", "a" * 1000)
    r.pip("nosuchpackage==1")
    before = snapshot(home)
    with pytest.raises(BuildError, match="nosuchpackage"):
        r.build("t:1")
    assert snapshot(home) == before


def test_pip_step_tars_the_staging_tree_and_records_pins_in_a_label(tmp_path, monkeypatch):
    calls = []

    def install_layer_tree(base, requirements, dest, *, index_url=None, find_links=None, store=None):
        calls.append((base.diff_ids, requirements))
        site = dest / "usr/local/lib/python3.12/site-packages/demo"
        site.mkdir(parents=True)
        (site / "__init__.py").write_text("VERSION = '1.0'\n")
        return [{"name": "demo", "version": "1.0", "sha256": "ab" * 32, "wheel": "demo.whl"}]
    monkeypatch.setattr("nbimages.builder.embedded.install_layer_tree", install_layer_tree)
    r = nbimages.Recipe("scratch")
    r.file("/etc/os-release", "ID=test\n")
    r.pip("demo==1.0")
    img = r.build("t:1")
    assert calls[0][0] == img.diff_ids[:1] and calls[0][1] == ["demo==1.0"]
    names = layer_members(img, 1)
    assert "usr/local/lib/python3.12/site-packages/demo/__init__.py" in names
    assert json.loads(img.labels["org.nbimages.pip"])[0]["version"] == "1.0"
    again = r.build("t:1")
    assert again.build_report[1]["cache"] == "hit" and len(calls) == 1
    assert again.labels == img.labels


def test_store_never_shows_a_half_written_blob(tmp_path):
    """A reader polling blobs/ during a build only ever sees complete, verified blobs."""
    big = tmp_path / "ctx"
    big.mkdir()
    (big / "big.bin").write_bytes(os.urandom(24 << 20))
    store = default_store()
    blobs = store.path / "blobs" / "sha256"
    seen: dict[str, bool] = {}
    done = threading.Event()

    def poll():
        while not done.is_set():
            for p in list(blobs.iterdir()):
                if p.name.startswith(".tmp-") or p.name in seen:
                    continue
                try:
                    data = p.read_bytes()
                except FileNotFoundError:
                    continue
                seen[p.name] = hashlib.sha256(data).hexdigest() == p.name
            time.sleep(0.001)

    t = threading.Thread(target=poll)
    t.start()
    try:
        r = nbimages.Recipe("scratch", context=big)
        r.copy("big.bin", "/big.bin")
        r.build("big:1", compression="zlib:1")
    finally:
        done.set()
        t.join()
    assert seen and all(seen.values())


def _concurrent_worker(home: str, ctx: str, n: int, q) -> None:
    os.environ["NBIMAGES_HOME"] = home
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_build import sample_recipe as make
        for i in range(4):
            r = make(Path(ctx))
            r.file("/app/worker.txt", f"worker {n} round {i}\n")
            r.build(f"w{n}:{i}")
        q.put(("ok", n))
    except Exception as e:  # noqa: BLE001 - report to the parent
        q.put(("error", repr(e)))


def test_two_processes_building_into_one_store_do_not_corrupt_it(tmp_path):
    home = tmp_path / "shared"
    ctx = make_context(tmp_path / "ctx")
    mp = multiprocessing.get_context("spawn")
    q = mp.Queue()
    procs = [mp.Process(target=_concurrent_worker, args=(str(home), str(ctx), n, q))
             for n in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = [q.get(timeout=5) for _ in procs]
    assert all(r[0] == "ok" for r in results), results
    store = Store(home)
    assert sorted(store.names()) == sorted(f"w{n}:{i}" for n in (1, 2) for i in range(4))
    for p in (store.path / "blobs" / "sha256").iterdir():
        assert not p.name.startswith(".tmp-")
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    for name in store.names():
        img = store.get(name)
        assert len(img.layers) == 5
    cache = json.loads((home / "build-cache.json").read_text())
    assert len(cache["layers"]) == 4 + 8


# ---- bad input: a clear error each, store unchanged

@pytest.mark.parametrize("call, match", [
    (lambda r: r.copy("data/", "/d", chmode=644), "unknown option chmode"),
    (lambda r: r.file("/x", "t", perms=1), "unknown option perms"),
    (lambda r: r.pip("pandas", extra_index="x"), "unknown option extra_index"),
    (lambda r: r.file("/x", "t", mode="rw-"), "octal"),
    (lambda r: r.copy("data/", "/d", chown="jovyan"), "numeric"),
    (lambda r: r.expose("http"), "not a port"),
    (lambda r: r.env(), "at least one"),
    (lambda r: nbimages.Recipe.step("frobnicate"), "unknown step"),
])
def test_bad_step_arguments_are_clear_errors(tmp_path, call, match):
    r = nbimages.Recipe("scratch", context=make_context(tmp_path / "ctx"))
    with pytest.raises(BuildError, match=match):
        call(r)
    assert r.steps == []


@pytest.mark.parametrize("src, match", [
    ("nothere.txt", "does not exist"),
    ("../outside.txt", "outside the build context"),
    ("data/../../outside.txt", "outside the build context"),
    ("escape-link", "outside the build context"),
    ("*.nomatch", "matches no file"),
])
def test_bad_copy_sources_are_clear_errors_and_the_store_is_unchanged(tmp_path, src, match):
    ctx = make_context(tmp_path / "ctx")
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(tmp_path / "outside.txt", ctx / "escape-link")
    home = default_store().home
    before = snapshot(home)
    r = nbimages.Recipe("scratch", context=ctx)
    r.file("/ok.txt", "fine")
    r.copy(src, "/x")
    with pytest.raises(BuildError, match=match):
        r.build("t:1")
    assert snapshot(home) == before


def test_run_step_is_refused_embedded_with_a_message_naming_the_engine():
    r = nbimages.Recipe("scratch")
    r.run("apt-get install -y curl")
    with pytest.raises(BuildError, match="engine"):
        r.build("t:1", engine="embedded")


def test_run_step_without_an_engine_named_builds_with_the_docker_engine(busybox_image):
    r = nbimages.Recipe(f"docker-daemon:{busybox_image}")
    r.run("echo built-by-the-engine > /made.txt")
    img = r.build("nbtest/auto-engine:1")
    assert nbimages.run(img, ["cat", "/made.txt"], stream=False).output.strip() == "built-by-the-engine"


def test_run_step_with_no_engine_answering_names_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    r = nbimages.Recipe("scratch")
    r.run("true")
    with pytest.raises(BuildError, match="engine"):
        r.build("t:1")


@pytest.mark.parametrize("tag, match", [("Bad Tag!!", "white space"),
                                        ("Upper:1", "lower-case"),
                                        ("x@sha256:" + "a" * 64, "has a digest")])
def test_a_tag_docker_would_refuse_fails_before_anything_is_stored(tmp_path, tag, match):
    from nbimages.errors import InvalidReference
    home = Path(os.environ["NBIMAGES_HOME"])
    with pytest.raises(InvalidReference, match=match):
        nbimages.Recipe("scratch").file("/a.txt", "a").build(tag)
    assert not (home / "oci" / "index.json").exists()

def test_unknown_base_is_a_clear_error():
    with pytest.raises(NbimagesError):
        nbimages.Recipe("oci:/nonexistent/layout:tag").build("t:1")


# ---- copy semantics

def test_dockerignore_is_honoured(tmp_path):
    ctx = make_context(tmp_path / "ctx")
    (ctx / ".dockerignore").write_text("# comment\ndata/sub\n*.sh\n!keep.sh\n")
    (ctx / "keep.sh").write_text("k")
    r = nbimages.Recipe("scratch", context=ctx)
    r.copy(".", "/src/")
    names = set(layer_members(r.build("t:1"), 0))
    assert "src/data/a.csv" in names and "src/keep.sh" in names
    assert "src/run.sh" not in names and not any(n.startswith("src/data/sub") for n in names)


def test_copy_file_into_directory_and_rename_and_globs(tmp_path):
    ctx = make_context(tmp_path / "ctx")
    r = nbimages.Recipe("scratch", context=ctx)
    r.copy("run.sh", "/bin/")
    r.copy("data/a.csv", "/etc/renamed.csv")
    r.copy(["data/*.csv", "run.sh"], "/many/")
    r.workdir("/work")
    r.copy("data/sub/b.txt", "rel.txt")
    img = r.build("t:1")
    assert set(layer_members(img, 0)) == {"bin", "bin/run.sh"}
    assert layer_members(img, 0)["bin/run.sh"].mode == 0o755
    assert "etc/renamed.csv" in layer_members(img, 1)
    assert {"many/a.csv", "many/run.sh"} <= set(layer_members(img, 2))
    assert "work/rel.txt" in layer_members(img, 3)


def test_several_sources_need_a_directory_destination(tmp_path):
    r = nbimages.Recipe("scratch", context=make_context(tmp_path / "ctx"))
    r.copy(["run.sh", "data/a.csv"], "/dest")
    with pytest.raises(BuildError, match="ending in '/'"):
        r.build("t:1")


# ---- building on a base: parents keep the lower metadata, lower symlinks are followed

@pytest.fixture
def merged_usr_base(tmp_path) -> str:
    t = LayerTree()
    t.add_dir("/usr/bin")
    t.add_bytes("/usr/bin/sh", b"#!fake\n", 0o755)
    t.add_symlink("/bin", "usr/bin")
    t.add_dir("/tmp", 0o1777)
    t.add_dir("/home/jovyan", 0o750, uid=1000, gid=100)
    t.add_bytes("/etc/motd", b"hi\n")
    return make_base(tmp_path / "base", t)


def test_new_files_under_existing_directories_keep_their_mode_and_owner(merged_usr_base):
    r = nbimages.Recipe(merged_usr_base)
    r.file("/tmp/scratch.txt", "x")
    r.file("/home/jovyan/notebook.ipynb", "{}", owner="1000:100")
    img = r.build("t:1")
    tmp = layer_members(img, 1)["tmp"]
    assert tmp.mode == 0o1777
    home = layer_members(img, 2)["home/jovyan"]
    assert (home.mode, home.uid, home.gid) == (0o750, 1000, 100)
    nb = layer_members(img, 2)["home/jovyan/notebook.ipynb"]
    assert (nb.uid, nb.gid) == (1000, 100)


def test_paths_through_a_lower_symlink_land_where_it_points(merged_usr_base):
    r = nbimages.Recipe(merged_usr_base)
    r.file("/bin/hello", "#!/bin/sh\necho hello\n", mode=0o755)
    r.remove("/bin/sh")
    img = r.build("t:1")
    assert set(layer_members(img, 1)) == {"usr", "usr/bin", "usr/bin/hello"}
    assert set(layer_members(img, 2)) == {"usr", "usr/bin", "usr/bin/.wh.sh"}


def test_base_layers_are_reused_as_is_and_config_extends_the_base(merged_usr_base):
    base = nbimages.open_image(merged_usr_base)
    r = nbimages.Recipe(merged_usr_base)
    r.env(A="1")
    img = r.build("t:1")
    assert img.layers[0].digest == base.layers[0].digest
    assert img.config["config"]["Env"] == ["PATH=/usr/bin:/bin", "A=1"]
    assert img.config["history"][0] == {"created_by": "test base"}
    assert img.manifest.annotations["org.opencontainers.image.base.digest"] == base.digest


def test_entrypoint_resets_a_cmd_inherited_from_the_base(merged_usr_base):
    r = nbimages.Recipe(merged_usr_base)
    r.entrypoint(["/bin/sh"])
    assert "Cmd" not in r.build("t:1").config["config"]
    r.cmd(["-c", "echo"])
    assert r.build("t:1").config["config"]["Cmd"] == ["-c", "echo"]


def test_nbimages_build_accepts_a_recipe_or_a_dockerfile(tmp_path):
    r = nbimages.Recipe("scratch")
    r.file("/a", "a")
    assert nbimages.build(r, "t:1").digest == r.build("t:1").digest
    img = nbimages.build("FROM scratch\nENV A=1\n", "t:2")
    assert img.config["config"]["Env"] == ["A=1"]


def test_a_recipe_can_start_from_an_image_object(merged_usr_base):
    base = nbimages.open_image(merged_usr_base)
    r = nbimages.Recipe(base)
    r.file("/x", "x")
    img = r.build("t:1")
    assert img.layers[0].digest == base.layers[0].digest and len(img.layers) == 2


def test_golden_diff_ids_and_image_id_do_not_drift(monkeypatch):
    """Fixed inputs, fixed ids: catches any change in tar, JSON or config encoding (whatever
    the Python version). The manifest digest is left out: it depends on the compressor."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    r = nbimages.Recipe("scratch", platform="linux/amd64")
    r.file("/app/hello.txt", "hello, reproducible world\n")
    r.file("/app/" + "long-name-" * 12 + ".txt", "caf\u00e9\n", mode=0o600)
    r.remove("/tmp/x")
    r.env(A="1")
    r.cmd(["cat", "/app/hello.txt"])
    img = r.build("golden:1")
    assert img.diff_ids == [
        "sha256:44a21459d14bbe031b7278352b0da4d1a54a31e26b14dd45f448582882431b60",
        "sha256:2bd135a6978149914e70fb4a85b8e5172997f07ccafe6285f65cad12d83f9cb7",
        "sha256:d14782ff9094c2b9bfdf9995d610beb169439ac18ffaa01370f497ef99a5d80c",
    ]
    assert img.id == "sha256:3dd5d062ed2ccff9b77a3fd03fe982f7a75887a9cc47ea5adea2c1b9ba060c2e"


def test_lower_view_applies_whiteouts_opaque_dirs_and_replacements():
    from nbimages.builder.lower import LowerView
    from nbimages.oci.tarwriter import DIR, FILE, SYMLINK, Entry
    v = LowerView()
    v.apply([Entry("a", DIR), Entry("a/b", DIR), Entry("a/b/c", DIR), Entry("o", DIR),
             Entry("o/x", DIR), Entry("l", SYMLINK, linkname="/a/b")])
    assert v.resolve("l/c/file") == "a/b/c/file"
    v.apply([Entry("a/.wh.b", FILE), Entry("o/.wh..wh..opq", FILE), Entry("o/new", DIR)])
    assert v.kind("a/b") is None and v.kind("a/b/c") is None
    assert v.kind("o/x") is None and v.kind("o/new") == "d"
    v.apply([Entry("a", FILE)])
    assert v.kind("a") is None
    v.apply([Entry("loop1", SYMLINK, linkname="loop2"), Entry("loop2", SYMLINK, linkname="loop1")])
    with pytest.raises(BuildError, match="symbolic links"):
        v.resolve("loop1/x")
