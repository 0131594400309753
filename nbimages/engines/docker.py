"""The Docker engine through the docker SDK: run containers, build Dockerfiles, move images.

Everything the engine says in its streams (container output, build log, pull/push progress)
is forwarded as it arrives, so a notebook cell shows it live. The engine's errors become
one-paragraph NbimagesError messages.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as _dt
import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .. import docker_endpoint as ep
from ..atomic import write_atomic
from ..docker_endpoint import CONNECT_TIMEOUT, short_cause
from ..errors import (AuthenticationError, BuildError, EngineUnavailable,
                      ImageNotFound, InvalidImage, NbimagesError, RegistryError)
from ..image import Image, parse_created
from ..progress import Progress
from ..sources import open_image
from ..sources.daemon import load_streamed
from ..store import default_store
from ..verbs import provided
from .base import (LABEL_COMMAND, LABEL_PORTS, LABEL_REMOVE, LABEL_SESSION, SESSION,
                   CommandNotFound, ContainerError, Engine, ImageRow, Logs, OutputTail, PortInUse,
                   RunResult)
from .recipes import DOCKERFILE, engine_build

if TYPE_CHECKING:
    import docker


def _sdk():
    """The docker SDK (~0.1 s to import): loaded when the Docker engine is first used."""
    import docker
    import docker.utils.socket  # noqa: F401 - frames_iter, for attached container streams
    return docker


API_TIMEOUT = 300
STOP_TIMEOUT = 5
# nbimages sources the engine cannot name: opened by nbimages and loaded in.
FILE_TRANSPORTS = ("docker-archive:", "oci:", "oci-archive:", "store:")


# ------------------------------------------------------------------------------------------
# connecting
def connect(endpoint: ep.Endpoint, timeout: float = CONNECT_TIMEOUT) -> "DockerEngine":
    """Ask the engine at `endpoint` for its version; raise EngineUnavailable if it is silent."""
    try:
        client = endpoint.client(timeout)
        version = client.version().get("Version", "?")
    except Exception as e:  # noqa: BLE001 - every failure here means "nothing answered"
        raise EngineUnavailable(
            f"no Docker engine answered at {endpoint.describe()}: {short_cause(e)}.") from None
    client.api.timeout = API_TIMEOUT
    return DockerEngine(client, endpoint, version)


def _engine_message(e: "docker.errors.APIError") -> str:
    return (getattr(e, "explanation", None) or str(e)).strip()


def split_ref(ref: str) -> tuple[str, str]:
    """`repo[:tag]` -> (repo, tag); a registry port is not a tag."""
    if "@" in ref:
        return ref, ""
    head, _, last = ref.rpartition("/")
    if ":" in last:
        name, tag = last.rsplit(":", 1)
        return (f"{head}/{name}" if head else name), tag
    return ref, "latest"


# ------------------------------------------------------------------------------------------
# images in the engine
class EngineImage(Image):
    """An image held by the Docker engine, and an Image like any other.

    Its ID, names, size and diff_ids come from the engine's inspect and cost nothing; its
    manifest, config bytes and layers are read through the engine (`docker save`, streamed to
    a temporary file) the first time one of them is asked for, so inspecting, saving or
    pushing it works as for any source. `run()` runs it in the engine that holds it.
    """

    def __init__(self, ref: str, id: str, tags: list[str] | None = None,
                 digests: list[str] | None = None, size: int | None = None,
                 created: str | None = None, diff_ids: list[str] | None = None,
                 engine: "DockerEngine | None" = None):
        self.ref = ref
        self._id = id
        self.tags = list(tags or [])
        self.digests = list(digests or [])
        self.size = size
        self._created = created
        self._diff_ids = list(diff_ids or [])
        self.engine = engine
        self.source = f"docker-daemon:{ref}"
        self.names = list(self.tags)
        self._opened: Image | None = None

    @classmethod
    def from_inspect(cls, engine: "DockerEngine", ref: str, attrs: dict) -> "EngineImage":
        return cls(ref, attrs["Id"], list(attrs.get("RepoTags") or []),
                   list(attrs.get("RepoDigests") or []), attrs.get("Size"), attrs.get("Created"),
                   list((attrs.get("RootFS") or {}).get("Layers") or []), engine)

    def open(self) -> Image:
        """The image as read through the engine (once; later calls reuse it)."""
        if self._opened is None:
            self._opened = open_image(f"docker-daemon:{self._id}")
        return self._opened

    # What the engine's inspect already says: no export needed.
    @property
    def id(self) -> str:
        return self._id

    @property
    def diff_ids(self) -> list[str]:
        return list(self._diff_ids)

    @property
    def created(self):
        return parse_created(self._created)

    # The rest of the Image contract: read through the engine on first use.
    @property
    def manifest(self):
        return self.open().manifest

    @property
    def config_bytes(self) -> bytes:
        return self.open().config_bytes

    @property
    def layers(self):
        return self.open().layers

    @property
    def config(self) -> dict[str, Any]:
        return self.open().config

    def run(self, command=None, **kw):
        """Run a container of this image in the engine that holds it (see nbimages.run)."""
        kw.setdefault("engine", self.engine)
        return provided("run")(self.ref, command, **kw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EngineImage) and other.id == self.id and other.ref == self.ref

    __hash__ = None  # type: ignore[assignment] - mutable, like Image

    def __repr__(self) -> str:
        size = f" {self.size:,} bytes" if self.size is not None else ""
        return f"<EngineImage {self.ref} {self.id[7:19]} {len(self._diff_ids)} layers{size}>"


# ------------------------------------------------------------------------------------------
# containers
class Container:
    """A container started by nbimages (docker-py's Model shape: attrs, id, reload, verbs)."""

    def __init__(self, engine: "DockerEngine", attrs: dict):
        self.engine = engine
        self.attrs = attrs

    @property
    def api(self):
        return self.engine.api

    @property
    def id(self) -> str:
        return self.attrs["Id"]

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def name(self) -> str:
        return (self.attrs.get("Name") or "").lstrip("/")

    @property
    def image(self) -> str:
        return (self.attrs.get("Config") or {}).get("Image", "")

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.attrs.get("Config") or {}).get("Labels") or {})

    @property
    def status(self) -> str:
        """created / running / exited / removed (re-read from the engine)."""
        try:
            self.reload()
        except ContainerError:
            return "removed"
        return self.attrs["State"]["Status"]

    @property
    def ports(self) -> list[str]:
        """Ports the service listens on (host networking: the same numbers on the host)."""
        text = self.labels.get(LABEL_PORTS, "")
        if text:
            return text.split(",")
        bound = ((self.attrs.get("NetworkSettings") or {}).get("Ports") or {})
        return [f"{(b or [{}])[0].get('HostPort', '')}->{p}" for p, b in bound.items() if b]

    def reload(self) -> "Container":
        self.attrs = self.engine._inspect_container(self.id)
        return self

    def logs(self, *, tail: int | None = None, follow: bool = False, stdout: bool = True,
             stderr: bool = True, timestamps: bool = False) -> Logs:
        """What the container wrote so far (follow=True: keep streaming into the cell until it
        exits or the kernel is interrupted)."""
        kw = dict(stdout=stdout, stderr=stderr, timestamps=timestamps,
                  tail="all" if tail is None else int(tail))
        try:
            if not follow:
                return Logs(self.api.logs(self.id, **kw).decode("utf-8", "replace"))
            out = OutputTail()
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            with contextlib.suppress(KeyboardInterrupt):
                for chunk in self.api.logs(self.id, stream=True, follow=True, **kw):
                    text = decoder.decode(chunk)
                    out.add("stdout", text)
                    _write(sys.stdout, text)
            return Logs(out.text())
        except _sdk().errors.NotFound:
            raise self.engine._no_container(self.name or self.short_id) from None

    def wait(self, timeout: float | None = None) -> int:
        """Block until the container exits; its exit code."""
        try:
            return int(self.api.wait(self.id, timeout=timeout)["StatusCode"])
        except _sdk().errors.NotFound:
            raise self.engine._no_container(self.name or self.short_id) from None
        except Exception as e:  # requests' ReadTimeout / ConnectionError
            if "timed out" in str(e).lower():
                raise ContainerError(f"container {self.name} is still running after {timeout} s; "
                                     "stop it with .stop() or wait longer.") from None
            raise

    def stop(self, timeout: int = STOP_TIMEOUT) -> None:
        """Stop it (SIGTERM, then SIGKILL after `timeout` s); removed too if started with remove=True."""
        with contextlib.suppress(_sdk().errors.NotFound):
            self.api.stop(self.id, timeout=timeout)
            if self.labels.get(LABEL_REMOVE) == "1":
                self.remove(force=True)

    def kill(self) -> None:
        with contextlib.suppress(_sdk().errors.NotFound):
            self.api.kill(self.id)

    def remove(self, force: bool = False) -> None:
        """Remove it (force=True also stops a running one)."""
        try:
            self.api.remove_container(self.id, force=force)
        except _sdk().errors.NotFound:
            pass
        except _sdk().errors.APIError as e:
            raise ContainerError(f"container {self.name} cannot be removed: {_engine_message(e)}. "
                                 "Stop it first (.stop()) or pass force=True.") from None

    def __repr__(self) -> str:
        state = (self.attrs.get("State") or {}).get("Status", "?")
        ports = f" ports={','.join(self.ports)}" if self.ports else ""
        return f"<Container {self.name} {self.short_id} {state} image={self.image}{ports}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


def _write(stream, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # a closed cell output must not kill the container loop
        pass


# ------------------------------------------------------------------------------------------
# ports and networks
def parse_ports(ports) -> list[tuple[int, str, Any]]:
    """`8080`, `"8080/udp"`, `[80, 443]` or `{8080: 8080}` -> [(container_port, proto, host)]."""
    if ports is None:
        return []
    if isinstance(ports, (int, str)):
        items: Iterable = [(ports, None)]
    elif isinstance(ports, dict):
        items = ports.items()
    else:
        items = [(p, None) for p in ports]
    out = []
    for spec, host in items:
        m = re.fullmatch(r"(\d{1,5})(?:/(tcp|udp|sctp))?", str(spec).strip())
        if not m or not 0 < int(m.group(1)) < 65536:
            raise ContainerError(f"{spec!r} is not a port: give a number like 8080 or '8080/udp' "
                                 "(a list of them, or a dict {container_port: host_port}).")
        out.append((int(m.group(1)), m.group(2) or "tcp", host))
    return out


def port_free(port: int, proto: str = "tcp") -> bool:
    """True when nothing on this machine listens on `port` (any address)."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1")):
        with socket.socket(family, kind) as s:
            # SO_REUSEADDR ignores TIME_WAIT leftovers; on Linux a listener still conflicts.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError:
                return False
    return True


# ------------------------------------------------------------------------------------------
# the engine
class DockerEngine(Engine):
    """The Docker Engine API (local socket, DOCKER_HOST or a docker context)."""

    name = "docker"

    def __init__(self, client: "docker.DockerClient", endpoint: ep.Endpoint, version: str):
        self.client = client
        self.api = client.api
        self.endpoint = endpoint
        self.version = version
        self.reason = f"Docker engine {version} answered at {endpoint.describe()}"

    # -- helpers --------------------------------------------------------------------------
    def _inspect_container(self, name: str) -> dict:
        try:
            return self.api.inspect_container(name)
        except _sdk().errors.NotFound:
            raise self._no_container(name) from None

    def _no_container(self, name: str) -> ContainerError:
        return ContainerError(f"no container {name!r} in the Docker engine (it may have been "
                              "removed when it stopped). nbimages.engines.ps(all=True) lists the "
                              "containers started from nbimages.")

    def has_image(self, ref: str) -> dict | None:
        try:
            return self.api.inspect_image(ref)
        except _sdk().errors.ImageNotFound:
            return None
        except _sdk().errors.APIError as e:
            if e.status_code in (400, 404):  # malformed names come back as 400
                return None
            raise

    def get(self, ref: str) -> EngineImage:
        attrs = self.has_image(ref)
        if attrs is None:
            raise ImageNotFound(f"the Docker engine has no image {ref!r}; pull it "
                                "(nbimages.engine().pull), build it, or list what it holds "
                                "with nbimages.images().")
        return EngineImage.from_inspect(self, ref, attrs)

    # -- run ------------------------------------------------------------------------------
    def ensure_image(self, image, pull: str = "missing") -> str:
        """A reference the engine can run for `image` (an Image, a store name, a file
        source or a registry name): loaded from the store or pulled when the engine lacks it."""
        return self._image_for_run(image, pull)

    def _image_for_run(self, image, pull: str) -> str:
        """An engine reference for `image`: an Image object is loaded in if missing, a name
        is found in the engine, else in the local store, else pulled (pull='missing')."""
        if isinstance(image, EngineImage):
            return image.id
        if isinstance(image, Image):
            if self.has_image(image.id) is None:
                self._load_image_object(image)
            return image.id
        ref = str(image)
        if ref.startswith(("docker-daemon:", "docker://")):
            ref = ref.split(":", 1)[1].lstrip("/")  # an engine or registry name
        elif ref.startswith(FILE_TRANSPORTS):
            opened = open_image(ref)
            if self.has_image(opened.id) is None:
                self._load_image_object(opened)
            return opened.id
        if pull == "always":
            self.pull(ref)
            return ref
        if self.has_image(ref) is not None:
            return ref
        stored = _from_store(ref)
        if stored is not None:
            self._load_image_object(stored)
            self.tag(stored.id, ref)
            return ref
        if pull == "missing":
            try:
                self.pull(ref)
                return ref
            except NbimagesError as e:
                raise ImageNotFound(f"image {ref!r} is neither in the Docker engine nor in the "
                                    f"local store, and pulling it failed: {e}") from None
        raise ImageNotFound(f"image {ref!r} is neither in the Docker engine nor in the local "
                            "store; build or pull it first (or pass pull='missing').")

    def _load_image_object(self, image) -> None:
        """`docker load` an Image from any source, streamed (the tar is never written out).

        Sent through this engine's own client, so a remote engine or a docker context gets it.
        """
        load_streamed(self.api, image)

    def run(self, image, command=None, *, env=None, ports=None, volumes=None, network=None,
            detach: bool = False, remove: bool = True, stream: bool = True, user=None,
            workdir=None, entrypoint=None, name: str | None = None, pull: str = "missing",
            labels: dict | None = None, stop_timeout: int = STOP_TIMEOUT):
        if pull not in ("missing", "never", "always"):
            raise ContainerError(f"pull={pull!r}: use 'missing' (default), 'never' or 'always'.")
        port_specs = parse_ports(ports)
        network = self._network_for(network, port_specs)
        host_config: dict[str, Any] = {"network_mode": network}
        if volumes:
            host_config["binds"] = _binds(volumes)
        if port_specs and network not in ("host", "none"):
            host_config["port_bindings"] = {f"{p}/{proto}": h for p, proto, h in port_specs}
        ref = self._image_for_run(image, pull)

        if isinstance(command, str):
            command = ["/bin/sh", "-c", command]  # the shell form, as in a Dockerfile or a recipe
        all_labels = {LABEL_SESSION: SESSION, LABEL_REMOVE: "1" if remove else "0",
                      LABEL_COMMAND: _command_text(command)[:200]}
        if network == "host" and port_specs:
            all_labels[LABEL_PORTS] = ",".join(f"{p}/{proto}" for p, proto, _ in port_specs)
        all_labels.update(labels or {})
        environment = [f"{k}={v}" for k, v in env.items()] if isinstance(env, dict) else env
        try:
            created = self.api.create_container(
                ref, command=command, environment=environment, user=user, working_dir=workdir,
                entrypoint=entrypoint, name=name, labels=all_labels, detach=detach,
                stop_timeout=stop_timeout,
                ports=[(p, proto) for p, proto, _ in port_specs] if "port_bindings" in host_config else None,
                host_config=self.api.create_host_config(**host_config))
        except _sdk().errors.ImageNotFound:
            raise ImageNotFound(f"the Docker engine has no image {ref!r}.") from None
        except _sdk().errors.APIError as e:
            raise self._create_error(e, ref, network, name) from None
        cid = created["Id"]
        if detach:
            try:
                self.api.start(cid)
            except _sdk().errors.APIError as e:
                with contextlib.suppress(_sdk().errors.APIError):
                    self.api.remove_container(cid, force=True)
                raise self._start_error(e, command, ref) from None
            return Container(self, self.api.inspect_container(cid))
        return self._run_foreground(cid, command, ref, stream, remove, stop_timeout)

    def _network_for(self, network, port_specs) -> str:
        if network is None:
            network = "host" if port_specs else "none"
        if port_specs and network == "none":
            raise ContainerError("ports were given but network='none' cuts the container off; "
                                 "use network='host' (the default when ports are given), where "
                                 "the service's own port is the host's port.")
        if network == "host":
            for port, proto, host in port_specs:
                if host not in (None, port, str(port)):
                    raise ContainerError(
                        f"port mapping {host}->{port} needs a bridge network, and nbimages runs "
                        f"containers on the host network (network='host'), where a service "
                        f"listening on {port} is reached on port {port} of the host. Make the "
                        f"service listen on {host} (most images take a port option or variable), "
                        "or run on a network of your own engine with network='bridge'.")
                if self.endpoint.is_local and not port_free(port, proto):
                    raise PortInUse(self._port_taken_message(port, proto))
        return network

    def _port_taken_message(self, port: int, proto: str) -> str:
        owner = ""
        with contextlib.suppress(Exception):
            for c in self.api.containers(filters={"label": LABEL_SESSION}):
                if f"{port}/{proto}" in (c.get("Labels") or {}).get(LABEL_PORTS, "").split(","):
                    owner = (f" The nbimages container {c['Names'][0].lstrip('/')} listens "
                             "there: stop it with nbimages.engines.stop(NAME).")
        return (f"port {port}/{proto} is already in use on the engine's host (another server or "
                f"container listens on it), so the container could not listen there.{owner} "
                "Stop what holds it or choose another port.")

    def _create_error(self, e: "docker.errors.APIError", ref: str, network, name) -> NbimagesError:
        msg = _engine_message(e)
        if "network" in msg and "not found" in msg:
            return ContainerError(f"the Docker engine has no network {network!r} ({msg}); use "
                                  "network='host' or 'none'.")
        if e.status_code == 409 and name:
            return ContainerError(f"a container named {name!r} already exists; pick another "
                                  "name or remove that container (nbimages.engines.container(NAME).remove(force=True)).")
        return ContainerError(f"the Docker engine refused to create a container of {ref}: {msg}")

    def _start_error(self, e: "docker.errors.APIError", command, ref: str) -> NbimagesError:
        msg = _engine_message(e)
        m = re.search(r'exec: "([^"]*)": (executable file not found in \$PATH|'
                      r'stat [^:]*: no such file or directory|permission denied)', msg)
        if m or "no such file or directory" in msg and "exec" in msg:
            what = m.group(1) if m else _command_text(command)
            why = m.group(2) if m else "no such file or directory"
            return CommandNotFound(
                f"the command {what!r} cannot be started in image {ref}: {why}. Check its "
                f"spelling and that the image has it (try nbimages.run({ref!r}, "
                "['sh', '-c', 'ls /bin /usr/bin']) or inspect the image's files).")
        if "address already in use" in msg:
            return PortInUse(f"a port the container needs is already in use: {msg}. Stop what "
                             "holds it or choose another port.")
        if "bind source path does not exist" in msg or "invalid mount" in msg:
            return ContainerError(f"a volume could not be mounted: {msg}. Volumes are "
                                  "{'/host/path': '/container/path'} with paths on the engine's host.")
        return ContainerError(f"the container of {ref} did not start: {msg}")

    def _run_foreground(self, cid: str, command, ref: str, stream: bool, remove: bool,
                        stop_timeout: int) -> RunResult:
        out = OutputTail()
        # Attach before starting (as the docker CLI does) so no early output is lost.
        sock = self.api.attach_socket(cid, params={"stdout": 1, "stderr": 1, "stream": 1})
        try:
            try:
                self.api.start(cid)
            except _sdk().errors.APIError as e:
                raise self._start_error(e, command, ref) from None
            decoders = {name: codecs.getincrementaldecoder("utf-8")("replace")
                        for name in ("stdout", "stderr")}
            for stream_id, data in _sdk().utils.socket.frames_iter(sock, tty=False):
                name = "stderr" if stream_id == 2 else "stdout"
                text = decoders[name].decode(data)
                if text:
                    out.add(name, text)
                    if stream:
                        _write(sys.stderr if name == "stderr" else sys.stdout, text)
            code = int(self.api.wait(cid)["StatusCode"])
        except KeyboardInterrupt:
            # The kernel was interrupted: the container must not outlive the cell.
            with contextlib.suppress(Exception):
                self.api.stop(cid, timeout=1)
            _write(sys.stderr, f"\n[nbimages] interrupted: stopped container {cid[:12]}\n")
            raise
        finally:
            with contextlib.suppress(Exception):
                sock.close()
            if remove:
                with contextlib.suppress(Exception):
                    self.api.remove_container(cid, force=True)
        return RunResult(code, output=out.text(), stdout=out.text("stdout"),
                         stderr=out.text("stderr"), container=cid, image=ref)

    # -- containers ---------------------------------------------------------------------------
    def containers(self, all: bool = False) -> list[Container]:
        """Containers started from nbimages (every session), running ones unless all=True."""
        found = self.api.containers(all=all, filters={"label": LABEL_SESSION})
        result = []
        for c in found:
            with contextlib.suppress(_sdk().errors.NotFound):
                result.append(Container(self, self.api.inspect_container(c["Id"])))
        return result

    def container(self, name) -> Container:
        if isinstance(name, Container):
            return name
        return Container(self, self._inspect_container(str(name)))

    # -- images ---------------------------------------------------------------------------
    def images(self) -> list[ImageRow]:
        rows = []
        for img in self.api.images():
            created = _dt.datetime.fromtimestamp(img.get("Created", 0), tz=_dt.timezone.utc)
            digests = [d for d in img.get("RepoDigests") or [] if "@" in d]
            tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
            if not tags:
                repo = digests[0].split("@")[0] if digests else "<none>"
                rows.append(ImageRow(repo, "<none>", digests[0].split("@")[1] if digests else None,
                                     img["Id"], img.get("Size"), created, "engine"))
            for t in tags:
                repo, tag = split_ref(t)
                digest = next((d.split("@")[1] for d in digests if d.split("@")[0] == repo), None)
                rows.append(ImageRow(repo, tag, digest, img["Id"], img.get("Size"), created, "engine"))
        return rows

    def remove(self, ref: str, *, force: bool = False) -> None:
        try:
            self.api.remove_image(ref, force=force)
        except _sdk().errors.ImageNotFound:
            raise ImageNotFound(f"the Docker engine has no image {ref!r}; nbimages.images() "
                                "lists what it holds.") from None
        except _sdk().errors.APIError as e:
            msg = _engine_message(e)
            if e.status_code == 409:
                raise NbimagesError(f"image {ref!r} cannot be removed: {msg}. Remove the "
                                    "containers that use it, or pass force=True.") from None
            raise NbimagesError(f"the Docker engine could not remove {ref!r}: {msg}") from None

    def tag(self, source: str, target: str) -> None:
        if self.has_image(source) is None:
            raise ImageNotFound(f"the Docker engine has no image {source!r} to tag.")
        repo, tag = split_ref(target)
        try:
            self.api.tag(source, repo, tag or None)
        except _sdk().errors.APIError as e:
            raise NbimagesError(f"cannot tag {source!r} as {target!r}: {_engine_message(e)}") from None

    def save(self, ref: str, path) -> Path:
        """`docker save` REF into a tar at `path` (written aside, renamed when complete)."""
        path = Path(path)
        if self.has_image(ref) is None:
            raise ImageNotFound(f"the Docker engine has no image {ref!r} to save.")
        write_atomic(path, self.api.get_image(ref, chunk_size=1 << 20))
        return path

    def load(self, path) -> list[str]:
        """`docker load` a docker-archive tar; the names (or IDs) it brought in."""
        path = Path(path)
        if not path.is_file():
            raise NbimagesError(f"{path} is not a file; give the path of a tar made by "
                                "`docker save` or nbimages.save().")
        loaded = []
        try:
            with open(path, "rb") as f:
                for ev in self.api.load_image(f):
                    if "error" in ev:
                        raise InvalidImage(f"the Docker engine could not load {path}: {ev['error']}")
                    m = re.match(r"Loaded image(?: ID)?: (\S+)", ev.get("stream", ""))
                    if m:
                        loaded.append(m.group(1))
        except _sdk().errors.APIError as e:
            raise InvalidImage(f"the Docker engine could not load {path}: {_engine_message(e)}. "
                               "Is it a `docker save` tar?") from None
        return loaded

    # -- pull / push ----------------------------------------------------------------------
    def pull(self, ref: str, *, platform: str | None = None, progress: bool | None = None) -> EngineImage:
        """Pull through the engine, one progress bar per layer from the engine's stream."""
        repo, tag = split_ref(ref)
        try:
            events = self.api.pull(repo, tag=tag or None, stream=True, decode=True, platform=platform)
            follow_progress(events, f"pull {ref}", "Downloading", enabled=progress, ref=ref)
        except _sdk().errors.APIError as e:
            raise _registry_error(ref, _engine_message(e), e.status_code) from None
        return self.get(ref)

    def push(self, ref: str, *, progress: bool | None = None) -> str | None:
        """Push through the engine; the pushed manifest digest."""
        if self.has_image(ref) is None:
            raise ImageNotFound(f"the Docker engine has no image {ref!r} to push; tag one "
                                "with that name first (nbimages.engines.tag).")
        repo, tag = split_ref(ref)
        try:
            events = self.api.push(repo, tag=tag or None, stream=True, decode=True)
            summary = follow_progress(events, f"push {ref}", "Pushing", enabled=progress, ref=ref)
        except _sdk().errors.APIError as e:
            raise _registry_error(ref, _engine_message(e), e.status_code) from None
        return summary.get("digest")

    # -- build ----------------------------------------------------------------------------
    def build_dockerfile(self, dockerfile: str, context=None, tag: str | None = None, *,
                         network: str = "none", build_args: dict | None = None,
                         stream: bool = True, pull: bool = False, nocache: bool = False,
                         labels: dict | None = None) -> EngineImage:
        """Build Dockerfile text with the engine; the log streams into the cell as it comes.

        `context` is a directory (its .dockerignore is honoured); without one the build has
        an empty context. A failing step raises BuildError with its command, exit code and
        last lines of output.
        """
        with tempfile.TemporaryDirectory(prefix="nbimages-build-") as tmp:
            ctx = Path(context) if context is not None else Path(tmp) / "context"
            ctx.mkdir(exist_ok=True)
            if not ctx.is_dir():
                raise BuildError(f"the build context {ctx} is not a directory.")
            # A Dockerfile outside the context: the SDK adds it to the context tar itself.
            df_path = Path(tmp) / "Dockerfile"
            df_path.write_text(dockerfile)
            try:
                events = self.api.build(
                    path=str(ctx), dockerfile=str(df_path), tag=tag, network_mode=network,
                    buildargs=build_args, rm=True, forcerm=True, decode=True, pull=pull,
                    nocache=nocache, labels=labels)
                image_id = BuildLog(stream).follow(events)
            except _sdk().errors.APIError as e:
                raise BuildError(f"the Docker engine refused the build: {_engine_message(e)}") from None
        return EngineImage.from_inspect(self, tag or image_id, self.api.inspect_image(image_id))

    def build_recipe(self, recipe, tag: str | None = None, *, network: str | None = None,
                     stream: bool = True, store=None, progress=None, nocache: bool = False,
                     build_args: dict | None = None) -> EngineImage:
        """Build a Recipe with the engine, RUN steps included: one instruction (so one layer
        for file/copy/pip/remove/run) per step, the log streamed into the cell.

        The base is used from the engine when it has it, else opened by nbimages (store,
        registry, tar ...) and loaded in. Network is 'none' unless a pip, apt or apk step
        needs 'host'.
        `progress` (the embedded builder's per-step callback) is not used: the log streams.
        """
        base_ref = self._base_for(recipe, store)
        with engine_build(recipe, base_ref) as job:
            net = network or ("host" if job.needs_network else "none")
            try:
                events = self.api.build(
                    fileobj=job.context, custom_context=True, dockerfile=DOCKERFILE, tag=tag,
                    network_mode=net, rm=True, forcerm=True, decode=True, nocache=nocache,
                    buildargs=build_args, platform=recipe.platform or None)
                image_id = BuildLog(stream, step_names=job.step_names).follow(events)
            except _sdk().errors.APIError as e:
                raise BuildError(f"the Docker engine refused the build: {_engine_message(e)}") from None
        return EngineImage.from_inspect(self, tag or image_id, self.api.inspect_image(image_id))

    build = build_recipe

    def _base_for(self, recipe, store) -> str:
        """A FROM line argument the engine resolves to the recipe's base image."""
        base = recipe.base
        if base == "scratch":
            return base
        plain = base[len("docker-daemon:"):] if base.startswith("docker-daemon:") else base
        if recipe.platform is None and self.has_image(plain) is not None:
            return plain  # (for a named platform, the base of that platform is loaded below)
        image = recipe._open_base(store or default_store())  # noqa: SLF001 - the recipe's own resolution
        if self.has_image(image.id) is None:
            self._load_image_object(image)
        return image.id


def _command_text(command) -> str:
    if command is None:
        return ""
    if isinstance(command, str):
        return command
    return " ".join(str(c) for c in command)


def _binds(volumes) -> Any:
    """Volumes as the SDK takes them, with `~` and relative host paths made absolute."""
    def fix(host: str) -> str:
        if host.startswith(("~", ".")) or os.sep in host:
            return os.path.abspath(os.path.expanduser(host))
        return host  # a named volume
    if isinstance(volumes, dict):
        out = {}
        for host, spec in volumes.items():
            if isinstance(spec, str):
                spec = {"bind": spec, "mode": "rw"}
            out[fix(str(host))] = spec
        return out
    result = []
    for item in volumes:
        host, _, rest = str(item).partition(":")
        result.append(f"{fix(host)}:{rest}" if rest else str(item))
    return result


def _from_store(ref: str):
    """The image named `ref` in the local store, or None."""
    try:
        return default_store().get(ref)
    except Exception:  # noqa: BLE001 - not there (or no store yet): the engine decides
        return None


def _registry_error(ref: str, msg: str, status: int | None = None) -> NbimagesError:
    low = msg.lower()
    if any(s in low for s in ("unauthorized", "authentication required", "denied: requested access",
                              "no basic auth credentials")):
        return AuthenticationError(f"the registry refused access to {ref}: {msg}. Log in "
                                   "(docker login) or check the name.")
    if status == 404 or any(s in low for s in ("not found", "manifest unknown",
                                                "repository does not exist", "does not exist")):
        return ImageNotFound(f"the registry has no image {ref}: {msg}. Check the name and tag.")
    return RegistryError(f"the Docker engine could not transfer {ref}: {msg}")


def follow_progress(events: Iterator[dict], desc: str, moving: str, *, enabled=None,
                    ref: str = "") -> dict:
    """Turn the engine's pull/push JSON stream into per-layer progress bars.

    Events carry `id` (a layer), `status` ("Downloading", "Pushing", "Pull complete", ...)
    and `progressDetail` {current, total}; lines without an id are summaries ("Digest: ...").
    """
    summary: dict[str, Any] = {"status": []}
    bars: dict[str, Any] = {}
    done_notes = {"Pull complete": None, "Download complete": None, "Already exists": "exists",
                  "Pushed": None, "Layer already exists": "exists"}
    with Progress(desc, enabled=enabled) as prog:
        for ev in events:
            if "error" in ev:
                raise _registry_error(ref, ev.get("error", ""))
            status = ev.get("status", "")
            lid = ev.get("id")
            detail = ev.get("progressDetail") or {}
            aux = ev.get("aux") or {}
            if aux.get("Digest"):
                summary["digest"] = aux["Digest"]
            if not lid or lid == split_ref(ref)[1] or status.startswith("Pulling from"):
                if status:
                    summary["status"].append(status)
                m = re.search(r"digest: (sha256:[0-9a-f]{64})", status, re.I)
                if m:
                    summary["digest"] = m.group(1)
                continue
            if status == moving and detail.get("total"):
                bar, seen = bars.get(lid, (None, 0))
                if bar is None:
                    bar = prog.bar(lid, detail["total"])
                current = min(int(detail.get("current") or 0), int(detail["total"]))
                if current > seen:
                    bar.update(current - seen)
                bars[lid] = (bar, max(seen, current))
            elif status in done_notes or status.startswith("Mounted from"):
                bar, seen = bars.get(lid, (None, 0))
                if bar is None:
                    bar = prog.bar(lid, None)
                elif bar.total and seen < bar.total:
                    bar.update(bar.total - seen)
                bar.close(done_notes.get(status, "mounted"))
                bars[lid] = (bar, bar.total or seen)
    return summary


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the legacy builder colours a step's stderr


class BuildLog:
    """Follows a legacy-builder stream: echoes it, tracks the step, explains a failure."""

    STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
    NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully (built|tagged) )")

    def __init__(self, stream: bool = True, tail: int = 15, step_names: dict[int, str] | None = None):
        self.stream = stream
        self.step_names = step_names or {}
        self.step: tuple[str, str, str] | None = None
        self.step_output: list[str] = []
        self.tail = tail
        self.image_id: str | None = None
        self.log = OutputTail()

    def feed(self, text: str) -> None:
        if self.stream:
            _write(sys.stdout, text)
        self.log.add("stdout", text)
        for line in ANSI.sub("", text).splitlines():
            m = self.STEP.match(line)
            if m:
                self.step = (m.group(1), m.group(2), m.group(3))
                self.step_output = []
            elif line.strip() and not self.NOISE.match(line):
                self.step_output = (self.step_output + [line])[-self.tail:]
            m = re.match(r"^Successfully built ([0-9a-f]+)", line)
            if m and not self.image_id:
                self.image_id = m.group(1)

    def follow(self, events: Iterable[dict]) -> str:
        """Consume the stream; the built image ID, or BuildError for a failed step."""
        for ev in events:
            if "stream" in ev:
                self.feed(ev["stream"])
            elif "status" in ev:  # a FROM image being pulled
                self.feed(f"{ev.get('id', '')} {ev['status']}\n".lstrip() if ev.get("id") is None
                          else f"{ev['id']}: {ev['status']}\n")
            elif (ev.get("aux") or {}).get("ID"):
                self.image_id = ev["aux"]["ID"]
            elif "error" in ev:
                raise self.error(ev["error"], (ev.get("errorDetail") or {}).get("code"))
        if not self.image_id:
            raise BuildError("the Docker engine ended the build without an image; its log is above.")
        return self.image_id

    def error(self, message: str, code: int | None) -> BuildError:
        where = "the build"
        if self.step:
            where = (self.step_names.get(int(self.step[0]))
                     or f"step {self.step[0]}/{self.step[1]} `{self.step[2]}`")
        m = re.search(r"returned a non-zero code: (\d+)", message)
        if m or (code and code > 0 and self.step and self.step[2].upper().startswith("RUN")):
            exit_code = int(m.group(1)) if m else code
            lines = self.step_output
            shown = ("Last lines of its output:\n" + "\n".join(f"    {line}" for line in lines)
                     if lines else "It printed nothing.")
            return BuildError(f"{where} failed with exit code {exit_code}. {shown}\nFix that "
                              "command and build again (earlier steps come from the build cache).")
        hint = ""
        if self.step and self.step[2].upper().startswith("FROM"):
            hint = (" The engine needs the base image: build, load or pull it into the engine "
                    "first (nbimages.images() lists what it has).")
        return BuildError(f"{where} failed: {message.strip()}.{hint}")
