"""Jupyter kernels that run inside an image, on the Docker engine.

    nbimages.kernel.install("analysis:1")      # `nbimages kernel install analysis:1`, `%image kernel`
    nbimages.kernel.list()                     # the nbimages kernelspecs, as a DataFrame
    nbimages.kernel.remove("nbimages-analysis-1")

`install` checks, in a throw-away container, that the image has Python and ipykernel, then
registers a kernelspec (jupyter_client's KernelSpecManager; user scope, or the environment's
with sys_prefix=True) that JupyterLab lists in its launcher. Its command is this module's
launcher (`python -m nbimages.kernel launch …`), which for every kernel start:

- runs ipykernel in a container of the image (pinned by image ID) on the host network, so
  the ports of Jupyter's connection file are the kernel's ports on 127.0.0.1;
- sends the connection file through the container's stdin (no mount: any image user can read
  it, and the HMAC key is not in the container's environment or its `docker inspect`);
- forwards SIGINT to the kernel inside (Jupyter's interrupt) and stops the container on
  SIGTERM/SIGHUP; the container is started with auto-remove, and its stdin stays open only
  while the launcher lives, so even a launcher killed with SIGKILL (Jupyter's forced
  shutdown) leaves no container behind: the kernel sees end-of-file and exits.

DOCKER_HOST and docker contexts are honoured (the one set at install time is written into
the kernelspec's env); the engine must run on this machine, since the kernel listens on the
host network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import docker_endpoint as endpoint, engines
from .engines.base import CommandNotFound, LABEL_COMMAND, LABEL_REMOVE, LABEL_SESSION, SESSION
from .errors import EngineUnavailable, NbimagesError
from .image import Image

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpecManager

__all__ = ["install", "list", "remove", "KernelInfo", "KernelError", "kernel_spec", "main"]

METADATA_KEY = "nbimages"
LABEL_KERNEL = "org.nbimages.kernel"
PYTHONS = ("python3", "python")
NAMED_SOURCES = ("store:", "docker-daemon:", "docker://", "docker-archive:", "oci:", "oci-archive:")
_list = list  # `list` is also a verb of this module

# What the container runs: read the connection file from stdin (one line of JSON), start
# ipykernel with it, and exit as soon as stdin ends (the launcher is gone). Python 3.x of any
# image; nothing but the standard library and ipykernel.
BOOTSTRAP = r"""
import os, sys, tempfile, threading
data = b""
while not data.endswith(b"\n"):
    chunk = os.read(0, 4096)
    if not chunk:
        sys.exit("nbimages kernel: no connection file on stdin")
    data += chunk
fd, path = tempfile.mkstemp(prefix="nbimages-kernel-", suffix=".json")
os.write(fd, data)
os.close(fd)
def _watch():
    while os.read(0, 65536):
        pass
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
sys.argv = ["ipykernel_launcher", "-f", path]
from ipykernel.kernelapp import launch_new_instance
launch_new_instance()
"""

# Run in a throw-away container at install time: which Python, and does it have ipykernel.
PROBE = r"""
import json, sys
try:
    import ipykernel
    version = getattr(ipykernel, "__version__", "?")
except ImportError:
    version = None
print("NBIMAGES-PROBE " + json.dumps({"executable": sys.executable, "ipykernel": version,
      "version": "%d.%d.%d" % tuple(sys.version_info[:3])}))
"""


class KernelError(NbimagesError):
    """A kernel that cannot be installed, found or started (no Python, no ipykernel, ...)."""


@dataclass
class KernelInfo:
    """An installed nbimages kernelspec: its name, where it is, and the image it runs."""

    name: str
    display_name: str
    image: str
    image_id: str | None
    resource_dir: str
    python: str = "python3"
    python_version: str | None = None
    ipykernel: str | None = None
    checked: bool = True
    notes: list[str] = field(default_factory=_list)

    def __repr__(self) -> str:
        lines = [f"kernel {self.name} ({self.display_name!r}) runs {self.python} in image "
                 f"{self.image}" + (f" ({self.image_id[:19]})" if self.image_id else ""),
                 f"  kernelspec: {self.resource_dir}"]
        if self.python_version:
            lines.append(f"  Python {self.python_version}, ipykernel {self.ipykernel}")
        lines += [f"  {n}" for n in self.notes]
        lines.append("  JupyterLab's launcher lists it within a minute (or reload the page)")
        return "\n".join(lines)


# ---- the kernelspec

def default_name(image: str) -> str:
    """`nbimages-analysis-1` for `127.0.0.1:5000/team/analysis:1` (kernelspec names are
    [a-z0-9._-])."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        last = last.replace("@sha256:", "-")[:24]
    slug = re.sub(r"[^a-z0-9._-]+", "-", last.lower()).strip("-._")
    return f"nbimages-{slug or 'image'}"


def kernel_spec(image: str, *, name: str, display_name: str, image_id: str | None = None,
                python: str = "python3", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The kernel.json of a kernel running `python` of `image` through the launcher."""
    argv = [sys.executable, "-m", "nbimages.kernel", "launch", "--image", image,
            "--python", python, "--name", name]
    if image_id:
        argv += ["--image-id", image_id]
    argv.append("{connection_file}")
    env = {k: os.environ[k] for k in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG",
                                      "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "NBIMAGES_HOME")
           if os.environ.get(k)}
    meta = {"image": image, "image_id": image_id, "python": python, **(extra or {})}
    spec: dict[str, Any] = {"argv": argv, "display_name": display_name, "language": "python",
                            "interrupt_mode": "signal",
                            "metadata": {METADATA_KEY: meta, "debugger": False}}
    if env:
        spec["env"] = env
    return spec


def write_spec(spec: dict[str, Any], name: str, *, user: bool = True,
               prefix: str | None = None, manager: KernelSpecManager | None = None) -> str:
    """Install a kernel.json with jupyter_client's KernelSpecManager; returns its directory."""
    ksm = manager or _kernelspecs()[0]()
    staging = Path(tempfile.mkdtemp(prefix="nbimages-kernelspec-"))
    try:
        (staging / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        return ksm.install_kernel_spec(str(staging), name, user=user and prefix is None,
                                       prefix=prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _nbimages_meta(spec_dict: dict[str, Any]) -> dict[str, Any] | None:
    meta = (spec_dict.get("metadata") or {}).get(METADATA_KEY)
    return meta if isinstance(meta, dict) else None


# ---- install / list / remove

def _kernelspecs() -> tuple[type, type]:
    """jupyter_client's KernelSpecManager and NoSuchKernel, loaded when a kernel is handled
    (not when the %image table or the CLI loads this module)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    return KernelSpecManager, NoSuchKernel


def _docker(what: str) -> Any:
    """The Docker engine on this machine, or EngineUnavailable / KernelError saying why not."""
    where = endpoint.resolve()
    if not where.is_local:  # refused before anything is sent to it
        raise KernelError(
            f"{what}: the Docker engine at {where.describe()} is on another machine, and "
            "an image kernel listens on the host network of the engine's machine, where Jupyter "
            "cannot reach it. Use an engine on this machine (unset DOCKER_HOST, or `docker "
            "context use default`), or run Jupyter on the engine's machine.")
    try:
        return engines.engine("docker")
    except EngineUnavailable as e:
        raise EngineUnavailable(f"{what} needs the Docker engine: {e}") from None


def probe(eng: Any, ref: str, label: str) -> dict[str, Any]:
    """Which Python the image has and its ipykernel version (None when missing)."""
    for python in PYTHONS:
        try:
            result = eng.run(ref, [], entrypoint=[python, "-c", PROBE], network="none",
                             stream=False, pull="never")
        except CommandNotFound:
            continue
        found = [l for l in result.stdout.splitlines() if l.startswith("NBIMAGES-PROBE ")]
        if result != 0 or not found:
            raise KernelError(f"{python} in image {label} did not run a one-line Python script "
                              f"(exit status {int(result)}): {result.tail(5).strip()[:500]}. "
                              "The kernel needs a working Python in the image.")
        info = json.loads(found[-1].split(" ", 1)[1])
        info["command"] = python
        return info
    raise KernelError(
        f"image {label} has no Python (neither python3 nor python is on its PATH), so no "
        "Python kernel can run in it. Build it on a Python base (`%image from python:3.12-slim`, "
        "or any image with python3) and add ipykernel (`%image pip ipykernel`).")


def install(image: Any, name: str | None = None, *, display_name: str | None = None,
            user: bool = True, sys_prefix: bool = False, prefix: str | None = None,
            check: bool = True, pull: str = "missing",
            kernel_spec_manager: KernelSpecManager | None = None) -> KernelInfo:
    """Register a Jupyter kernel that runs inside `image` on the Docker engine.

    `image`: a name in the engine or the local store (a store image is loaded into the
    engine), an Image, or a registry reference (pulled when missing, pull='never' to refuse).
    The image must have Python and ipykernel: a throw-away container checks it, and the
    kernel is pinned to the image ID found. `name` defaults to nbimages-<image name>;
    `sys_prefix=True` installs into this Python environment instead of the user's Jupyter
    folder. `check=False` writes the kernelspec without asking the engine (nothing is
    checked or pinned; the kernel starts once an engine answers and has the image).
    `kernel_spec_manager`: jupyter_client's, to install where it looks (default: Jupyter's).
    """
    label = ref = str(image)
    if isinstance(image, Image):
        # a name the launcher can find it by again, should the engine lose the pinned ID: where
        # it was opened from (store:NAME stays the store's image even if the engine has another
        # of that name), else one of its names (an image opened from the store has them too)
        label = ref = (image.source if str(image.source).startswith(NAMED_SOURCES)
                       else image.names[0] if image.names else image.id)
    name = name or default_name(label)
    if not re.fullmatch(r"[a-z0-9._-]+", name):
        raise KernelError(f"{name!r} cannot be a kernel name: use lower-case letters, digits, "
                          "'.', '_' and '-' (Jupyter's rule for kernelspec names).")
    if sys_prefix:
        prefix = sys.prefix
    spec_manager, no_such_kernel = _kernelspecs()
    ksm = kernel_spec_manager or spec_manager()
    with contextlib.suppress(no_such_kernel):
        existing = ksm.get_kernel_spec(name)
        if _nbimages_meta(existing.to_dict()) is None:
            raise KernelError(f"a kernel named {name!r} already exists in {existing.resource_dir} "
                              "and is not an nbimages kernel; choose another name (--name).")
    info: dict[str, Any] = {}
    image_id = None
    notes = []
    if check:
        try:
            eng = _docker(f"installing a kernel for image {label}")
        except EngineUnavailable as e:
            raise EngineUnavailable(
                f"{e} Nothing was written. To write the kernelspec anyway (it is not checked, "
                "and the kernel starts only once an engine answers), pass check=False "
                "(`--no-check`).") from None
        ref_in_engine = eng.ensure_image(image, pull)
        attrs = eng.has_image(ref_in_engine)
        image_id = attrs["Id"] if attrs else None
        info = probe(eng, image_id or ref_in_engine, label)
        if info.get("ipykernel") is None:
            raise KernelError(
                f"image {label} has Python {info['version']} ({info['executable']}) but no "
                "ipykernel, which a Jupyter kernel needs. Add it to the recipe with "
                "`%image pip ipykernel` (or Recipe.pip('ipykernel')), build the image again and "
                "install the kernel from the new build.")
    else:
        notes.append("not checked: the image was not looked at (check=False); the kernel starts "
                     "only once the engine answers and has the image with Python and ipykernel.")
    python = info.get("executable") or "python3"
    version = ".".join(str(info.get("version", "")).split(".")[:2])
    display_name = display_name or (f"Python {version} (image {label})" if version
                                    else f"Python (image {label})")
    spec = kernel_spec(ref, name=name, display_name=display_name, image_id=image_id,
                       python=python, extra={"python_version": info.get("version"),
                                             "ipykernel": info.get("ipykernel")})
    resource_dir = write_spec(spec, name, user=user, prefix=prefix, manager=ksm)
    return KernelInfo(name, display_name, ref, image_id, resource_dir, python,
                      info.get("version"), info.get("ipykernel"), check, notes)


def list() -> Any:  # noqa: A001 - `nbimages.kernel.list()` reads as the verb
    """The installed nbimages kernels (a DataFrame: name, display_name, image, image_id,
    python, python_version, ipykernel, resource_dir)."""
    import pandas as pd
    rows = []
    for name, entry in sorted(_kernelspecs()[0]().get_all_specs().items()):
        spec = entry.get("spec") or {}
        meta = _nbimages_meta(spec)
        if meta is None:
            continue
        rows.append({"name": name, "display_name": spec.get("display_name"),
                     "image": meta.get("image"), "image_id": meta.get("image_id"),
                     "python": meta.get("python"), "python_version": meta.get("python_version"),
                     "ipykernel": meta.get("ipykernel"), "resource_dir": entry.get("resource_dir")})
    return pd.DataFrame(rows, columns=["name", "display_name", "image", "image_id", "python",
                                       "python_version", "ipykernel", "resource_dir"])


def remove(name: str) -> str:
    """Remove an nbimages kernelspec by name; returns the folder removed. Kernels of other
    kinds are refused (`jupyter kernelspec remove` is the tool for those)."""
    spec_manager, no_such_kernel = _kernelspecs()
    ksm = spec_manager()
    try:
        spec = ksm.get_kernel_spec(name)
    except no_such_kernel:
        known = ", ".join(list()["name"]) or "none"
        raise KernelError(f"there is no kernel named {name!r} (nbimages kernels: {known}; "
                          "`nbimages kernel list` shows them).") from None
    if _nbimages_meta(spec.to_dict()) is None:
        raise KernelError(f"the kernel {name!r} ({spec.resource_dir}) is not an nbimages kernel; "
                          "remove it with `jupyter kernelspec remove` if you mean to.")
    return ksm.remove_kernel_spec(name)


# ---- the launcher: what the kernelspec runs

def _launch_args(argv: _list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nbimages.kernel launch",
                                description="Run ipykernel inside an image (started by Jupyter).")
    p.add_argument("connection_file")
    p.add_argument("--image", required=True)
    p.add_argument("--image-id", default=None)
    p.add_argument("--python", default="python3")
    p.add_argument("--name", default="nbimages")
    return p.parse_args(argv)


def _image_to_run(eng: Any, a: argparse.Namespace) -> str:
    """The pinned image ID when the engine has it, else the image name (loaded or pulled)."""
    if a.image_id and eng.has_image(a.image_id) is not None:
        return a.image_id
    ref = eng.ensure_image(a.image, "missing")
    found = (eng.has_image(ref) or {}).get("Id")
    if a.image_id and found != a.image_id:
        print(f"nbimages kernel {a.name}: the engine no longer has image {a.image_id[:19]} the "
              f"kernel was installed for; running {a.image} ({str(found)[:19]}) instead.",
              file=sys.stderr, flush=True)
    return ref


def launch(argv: _list[str]) -> int:
    """Start the kernel container, relay its log and signals; returns its exit status."""
    a = _launch_args(argv)
    catch = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    # Blocked from the start and taken with sigtimedwait below (threads inherit the mask), so
    # an early interrupt or stop waits for the container instead of killing the launcher.
    signal.pthread_sigmask(signal.SIG_BLOCK, catch)
    from docker.errors import APIError  # the Docker SDK, loaded by a launcher only
    from docker.utils.socket import frames_iter
    try:
        connection = json.dumps(json.loads(Path(a.connection_file).read_text()))
        eng = _docker(f"the kernel {a.name}")
        ref = _image_to_run(eng, a)
    except (NbimagesError, OSError, ValueError) as e:
        print(f"nbimages kernel {a.name}: {e}", file=sys.stderr, flush=True)
        return 1
    api = eng.api
    labels = {LABEL_SESSION: SESSION, LABEL_REMOVE: "1", LABEL_KERNEL: a.name,
              LABEL_COMMAND: f"jupyter kernel {a.name}"}
    try:
        cid = api.create_container(
            ref, entrypoint=[a.python, "-c", BOOTSTRAP], command=[], stdin_open=True,
            labels=labels, name=f"{a.name}-{os.urandom(4).hex()}",
            host_config=api.create_host_config(network_mode="host", auto_remove=True))["Id"]
    except APIError as e:
        print(f"nbimages kernel {a.name}: the Docker engine refused to create the kernel's "
              f"container of {ref}: {e.explanation or e}", file=sys.stderr, flush=True)
        return 1
    sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    done = threading.Event()

    def relay() -> None:  # the kernel's own log goes where Jupyter shows kernel logs
        try:
            for _, data in frames_iter(sock, tty=False):
                sys.stderr.buffer.write(data)
                sys.stderr.flush()
        except OSError:
            pass
        finally:
            done.set()

    try:
        try:
            api.start(cid)
        except APIError as e:
            print(f"nbimages kernel {a.name}: the kernel's container of {ref} did not start "
                  f"({e.explanation or e}); is {a.python} the image's Python?", file=sys.stderr,
                  flush=True)
            return 1
        raw = getattr(sock, "_sock", sock)
        raw.sendall(connection.encode() + b"\n")
        threading.Thread(target=relay, daemon=True).start()
        while not done.is_set():
            signum = signal.sigtimedwait(catch, 0.5)
            if signum is None:
                continue
            if signum.si_signo == signal.SIGINT:
                with contextlib.suppress(Exception):
                    api.kill(cid, signal="SIGINT")
            else:
                break
        code = 0
        if done.is_set():
            with contextlib.suppress(Exception):
                code = int(api.wait(cid, timeout=10).get("StatusCode", 0))
        return code
    finally:
        with contextlib.suppress(Exception):
            api.remove_container(cid, force=True)
        with contextlib.suppress(Exception):
            sock.close()


def main(argv: _list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["launch"]:
        print("usage: python -m nbimages.kernel launch --image REF CONNECTION_FILE (this is what "
              "an nbimages kernelspec runs; see `nbimages kernel --help`)", file=sys.stderr)
        return 2
    return launch(argv[1:])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
