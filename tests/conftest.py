"""Shared fixtures: the real Docker engine, the loopback registry and base images built here.

Under CI=true a test that needs the engine or the registry fails when they are missing;
elsewhere it is skipped with the command that starts them.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from bases import IN_CI, unavailable  # noqa: F401 - re-exported to the tests

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = os.environ.get("NBIMAGES_TEST_REGISTRY", "127.0.0.1:5000")
START_HINT = "start them with: bash scripts/services.sh start"


def _missing(what: str) -> None:
    unavailable(f"{what} is not available ({START_HINT})")


_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    """getaddrinfo that refuses any name or address outside the loopback range.

    The tests talk to servers on 127.0.0.0/8 only; a test that would reach Docker Hub or any
    other host fails at once, naming the host, instead of sending traffic out.
    """
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name in ("localhost", "ip6-localhost"):
        return _real_getaddrinfo(host, *args, **kwargs)
    try:
        if ipaddress.ip_address(name.strip("[]")).is_loopback:
            return _real_getaddrinfo(host, *args, **kwargs)
    except ValueError:
        pass
    raise socket.gaierror(socket.EAI_NONAME,
                          f"tests may only reach loopback addresses; {name!r} was asked for")


@pytest.fixture(autouse=True, scope="session")
def _no_traffic_beyond_loopback():
    socket.getaddrinfo = _loopback_only
    yield
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own NBIMAGES_HOME (an empty store) and no Docker credentials."""
    home = tmp_path_factory.mktemp("nbhome")
    monkeypatch.setenv("NBIMAGES_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client for the real engine."""
    try:
        import docker
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure means "no engine"
        _missing(f"the Docker engine ({e.__class__.__name__})")
    return client


@pytest.fixture(scope="session")
def registry() -> str:
    """host:port of the real registry on loopback (plain http)."""
    import requests
    try:
        requests.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except Exception as e:  # noqa: BLE001
        _missing(f"the registry on {REGISTRY} ({e.__class__.__name__})")
    return REGISTRY


def tool(name: str) -> str:
    """Path of an independent checker (skopeo, umoci, dive, syft); fails in CI if missing."""
    venv_bin = Path(os.sys.executable).parent
    path = shutil.which(name) or (str(venv_bin / name) if (venv_bin / name).exists() else None)
    if not path:
        _missing(f"the {name} command")
    return path


def docker_build(client, context: Path, tag: str, dockerfile: str | None = None) -> str:
    """Build with the engine (legacy builder, no network) and return the image ID."""
    if dockerfile is not None:
        (context / "Dockerfile").write_text(dockerfile)
    image, _ = client.images.build(path=str(context), tag=tag, network_mode="none", rm=True,
                                   forcerm=True)
    return image.id


@pytest.fixture(scope="session")
def busybox_image(docker_client, tmp_path_factory) -> str:
    """`nbtest/busybox:1` in the engine: Debian's static busybox with its applet links."""
    tag = "nbtest/busybox:1"
    ctx = tmp_path_factory.mktemp("busybox")
    shutil.copy("/bin/busybox", ctx / "busybox")
    docker_build(docker_client, ctx, tag,
                 "FROM scratch\nCOPY busybox /bin/busybox\n"
                 'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                 'CMD ["sh"]\n')
    return tag


@pytest.fixture(scope="session")
def busybox_in_registry(busybox_image, docker_client, registry) -> str:
    """The busybox base pushed to the loopback registry; returns its reference."""
    ref = f"{registry}/nbtest/busybox:1"
    img = docker_client.images.get(busybox_image)
    img.tag(f"{registry}/nbtest/busybox", "1")
    for _ in docker_client.images.push(f"{registry}/nbtest/busybox", tag="1", stream=True, decode=True):
        pass
    return ref


@pytest.fixture(scope="module")
def ip():
    """A real IPython shell with `%load_ext nbimages` done (unloaded after the module)."""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbimages")
    yield shell
    shell.run_line_magic("unload_ext", "nbimages")


@pytest.fixture
def fresh_ip(ip):
    """The shell of `ip` with an empty notebook recipe session before and after the test."""
    from nbimages.workflow import session
    session.reset()
    yield ip
    session.reset()


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; raise with its stderr on failure."""
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as e:
        raise AssertionError(f"{cmd} failed ({e.returncode}):\n{e.stdout}\n{e.stderr}") from None


# Python base image (debootstrap, cached outside the repo) and test wheels: see tests/bases.py.
from bases import offline_pip, python_base_image, python_base_in_registry, wheel_index  # noqa: E402,F401
# An image with ipykernel (kernel and execute tests) and isolated Jupyter folders: tests/kernel_image.py.
from kernel_image import jupyter_dirs, kernel_image  # noqa: E402,F401
