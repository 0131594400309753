"""The `nbimages` command as a real subprocess: usage errors, user errors, registry verbs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
NBIMAGES = str(VENV_BIN / "nbimages")


def cli(*args: str, module: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nbimages", *args] if module else [NBIMAGES, *args]
    full_env = dict(os.environ, NBIMAGES_PROGRESS="lines", **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)


def one_paragraph(text: str) -> str:
    text = text.strip()
    assert text, "expected a message on stderr"
    assert "\n\n" not in text and "Traceback" not in text, text
    return text


def test_console_script_and_module_print_the_same_help():
    a, b = cli("--help"), cli("--help", module=True)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
    for name in ("inspect", "pull", "push", "copy", "search", "tags"):
        assert f"    {name} " in a.stdout


def test_help_shows_summaries_that_contain_a_percent_sign():
    r = cli("--help")
    assert r.returncode == 0, r.stderr
    assert "notebook's %image cells" in r.stdout


def test_version():
    r = cli("--version", module=True)
    assert r.returncode == 0 and r.stdout.startswith("nbimages ")


def test_no_command_prints_help_and_exits_2():
    r = cli()
    assert r.returncode == 2
    assert "usage: nbimages" in r.stdout


def test_unknown_command_is_one_paragraph_with_a_suggestion_exit_2():
    r = cli("inspcet", "x")
    assert r.returncode == 2
    msg = one_paragraph(r.stderr)
    assert "unknown command 'inspcet'" in msg and "Did you mean 'inspect'?" in msg
    assert r.stdout == ""


def test_missing_argument_is_one_paragraph_exit_2():
    r = cli("copy", "store:x")
    assert r.returncode == 2
    msg = one_paragraph(r.stderr)
    assert msg.startswith("nbimages copy: the following arguments are required: DEST")


def test_unknown_option_is_one_paragraph_exit_2():
    r = cli("pull", "busybox", "--platfrom", "linux/arm64")
    assert r.returncode == 2
    assert "unrecognized arguments: --platfrom" in one_paragraph(r.stderr)


def test_registry_refusing_is_a_user_error_exit_1():
    r = cli("pull", "127.0.0.1:9/nothing/here:1")
    assert r.returncode == 1
    msg = one_paragraph(r.stderr)
    assert msg.startswith("nbimages: RegistryError: ") and "127.0.0.1:9" in msg


def test_malformed_reference_is_a_user_error_exit_1():
    r = cli("pull", "UPPER/Case::bad")
    assert r.returncode == 1
    assert one_paragraph(r.stderr).startswith("nbimages: InvalidReference: ")


def test_pull_prints_name_and_digest_and_progress_lines(busybox_in_registry, tmp_path):
    r = cli("pull", busybox_in_registry, env={"NBIMAGES_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    name, digest = r.stdout.split()
    assert name == busybox_in_registry and digest.startswith("sha256:")
    assert r.stderr.splitlines()[-1].startswith(f"pull {busybox_in_registry}: done, ")
    quiet = cli("pull", "-q", busybox_in_registry, env={"NBIMAGES_HOME": str(tmp_path)})
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == r.stdout


def test_copy_between_registries_keeps_the_digest(busybox_in_registry, registry, tmp_path):
    home = {"NBIMAGES_HOME": str(tmp_path / "home")}
    r = cli("tags", busybox_in_registry.rsplit(":", 1)[0], "--details", "--json", env=home)
    source_digest = {row["tag"]: row["digest"] for row in json.loads(r.stdout)}["1"]
    r = cli("copy", "-q", f"docker://{busybox_in_registry}", f"docker://{registry}/nbtest/cli-copy:1",
            env=home)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == source_digest
    r = cli("tags", f"{registry}/nbtest/cli-copy", "--details", "--json", env=home)
    assert r.returncode == 0, r.stderr
    assert [(row["tag"], row["digest"]) for row in json.loads(r.stdout)] == [("1", source_digest)]


def test_push_of_an_archive_prints_the_digest_the_registry_holds(busybox_in_registry, registry, tmp_path):
    home = {"NBIMAGES_HOME": str(tmp_path / "home")}
    archive = tmp_path / "bb.tar"
    r = cli("copy", "-q", f"docker://{busybox_in_registry}", f"oci-archive:{archive}", env=home)
    assert r.returncode == 0, r.stderr
    assert archive.stat().st_size > 0
    r = cli("push", "-q", f"oci-archive:{archive}", f"{registry}/nbtest/cli-push:1", env=home)
    assert r.returncode == 0, r.stderr
    pushed = r.stdout.strip()
    r = cli("tags", f"{registry}/nbtest/cli-push", "--details", "--json", env=home)
    assert [(row["tag"], row["digest"]) for row in json.loads(r.stdout)] == [("1", pushed)]


def test_catalog_lists_repositories(busybox_in_registry, registry):
    r = cli("catalog", registry)
    assert r.returncode == 0, r.stderr
    assert "nbtest/busybox" in r.stdout.split()


@pytest.mark.parametrize("module", [False, True])
def test_output_piped_into_head_does_not_traceback(module, busybox_in_registry, registry):
    cmd = [sys.executable, "-m", "nbimages"] if module else [NBIMAGES]
    p = subprocess.run(" ".join(cmd + ["catalog", registry]) + " | head -c1", shell=True,
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr


def test_save_writes_a_docker_archive(busybox_image, tmp_path):
    r = cli("save", f"docker-daemon:{busybox_image}", str(tmp_path / "bb.tar"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "bb.tar")
    import tarfile
    with tarfile.open(tmp_path / "bb.tar") as t:
        assert "manifest.json" in t.getnames()


def test_save_of_a_missing_file_is_a_user_error_exit_1(tmp_path):
    r = cli("save", f"docker-archive:{tmp_path}/missing.tar", str(tmp_path / "out.tar"))
    assert r.returncode == 1
    assert one_paragraph(r.stderr).startswith("nbimages: ImageNotFound: ")
    assert not (tmp_path / "out.tar").exists()


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello from the CLI\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def test_build_writes_a_handout_that_docker_loads_and_runs(busybox_image, docker_client, tmp_path):
    ctx = _context(tmp_path, f"FROM {busybox_image}\nCOPY hello.txt /hello.txt\n"
                             'CMD ["cat", "/hello.txt"]\n')
    out = tmp_path / "handout.tar"
    r = cli("build", "-t", "nbtest/cli-build:1", "-o", str(out), str(ctx),
            env={"NBIMAGES_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    tag, digest = r.stdout.split()
    assert tag == "nbtest/cli-build:1" and digest.startswith("sha256:")
    assert "COPY hello.txt /hello.txt" in r.stderr  # the build report
    with open(out, "rb") as f:
        docker_client.images.load(f.read())
    output = docker_client.containers.run("nbtest/cli-build:1", network_mode="none", remove=True)
    assert output == b"hello from the CLI\n"


def test_build_is_reproducible_across_stores(tmp_path):
    ctx = _context(tmp_path, "FROM scratch\nCOPY hello.txt /hello.txt\nENV A=1\n")
    digests = set()
    for home in ("h1", "h2"):
        r = cli("build", "-q", "-t", "x/repro:1", "-f", str(ctx / "Dockerfile"), str(ctx),
                env={"NBIMAGES_HOME": str(tmp_path / home)})
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
        digests.add(r.stdout.strip())
    assert len(digests) == 1


def test_build_of_a_missing_dockerfile_is_a_user_error_exit_1(tmp_path):
    r = cli("build", "-f", str(tmp_path / "nope"), "-t", "x:1")
    assert r.returncode == 1
    assert one_paragraph(r.stderr.splitlines()[-1]).startswith("nbimages: BuildError: no Dockerfile")
    assert "Traceback" not in r.stderr


def test_build_with_a_run_line_names_the_engine(tmp_path):
    ctx = _context(tmp_path, "FROM scratch\nRUN echo hi\n")
    r = cli("build", "-t", "x:1", str(ctx), env={"NBIMAGES_HOME": str(tmp_path / "home")})
    assert r.returncode == 1
    msg = r.stderr.strip().splitlines()[-1]
    assert msg.startswith("nbimages: BuildError: Dockerfile line 2: RUN") and "engine" in msg


def test_build_bad_build_arg_is_usage_exit_2(tmp_path):
    r = cli("build", "--build-arg", "NOEQUALS", str(tmp_path))
    assert r.returncode == 2
    assert "is not KEY=VALUE" in one_paragraph(r.stderr)
