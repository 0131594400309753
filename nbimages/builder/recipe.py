"""A recipe: a base image and an ordered list of steps, built into an image without Docker.

    r = nbimages.Recipe("python:3.12-slim")
    r.file("/app/clean.py", text); r.copy("data/", "/data/"); r.pip("pandas==2.2.3")
    r.env(PYTHONUNBUFFERED="1"); r.cmd(["python", "/app/clean.py"])
    img = r.build("handout:1"); print(r.to_dockerfile())

Each file/copy/pip/apt/apk/remove step makes one layer; the other steps change only the config.
Steps carry a `key` (a notebook cell id) so re-running a cell replaces its step in place
(`put`), and an `origin` (execution count, Dockerfile line) shown in the build report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import html
from ..errors import BuildError, InvalidReference
from ..image import Image
from ..oci.descriptor import Descriptor, Platform
from ..reference import Reference
from ..store import default_store
from ..verbs import provided
from .dockerfile_writer import dockerfile_text, write_context
from .apk import check_packages as check_apk_packages
from .apt import check_packages
from .embedded import BASE_DIGEST_ANNOTATION, PIP_LABEL, build_recipe, open_base
from .pip import check_requirements
from .platforms import build_platforms, parse_platforms
from .steps import (KINDS, Step, check_options, command, env_name, image_path, parse_mode,
                    parse_owner, port)


class Recipe:
    """A base image plus steps. The base is `"scratch"`, any source nbimages.open_image
    accepts (`python:3.12-slim`, `oci:DIR:TAG`, `docker-daemon:REF`, ...) or an Image.

    `platforms=["linux/amd64", "linux/arm64"]` (or `"all"`: every platform of the base's
    index) builds an image per platform on that platform's base, and an OCI index over them;
    `platform="linux/amd64,linux/arm64"` (a list, or "all") means the same.
    """

    def __init__(self, base: "str | Any" = "scratch", *, context: str | os.PathLike = ".",
                 platform: str | None = None, compression: str | None = None,
                 platforms: "str | list[str] | None" = None):
        base_image = None
        if isinstance(base, Image):
            base_image = base
            base = base.names[0] if base.names else (base.source or base.digest)
        if not isinstance(base, str) or not base.strip():
            raise BuildError(f"the base image {base!r} is not a name: give a reference such as "
                             "python:3.12-slim, a source such as oci:DIR:TAG, or 'scratch'.")
        self.base = base.strip()
        self.context = Path(os.path.abspath(os.fspath(context)))
        if platforms is None and isinstance(platform, str) and (
                "," in platform or platform.strip().lower() == "all"):
            platform, platforms = None, platform  # `--platform linux/amd64,linux/arm64`
        self.platform = platform
        self.platforms = parse_platforms(platforms)
        if self.platforms is not None and platform is not None:
            raise BuildError(f"give platform={platform!r} (one image) or platforms= (an image "
                             "per platform and an index over them), not both.")
        self.compression = compression
        self.steps: list[Step] = []
        self.report = None
        self._base_image = base_image
        self._bases: dict[str, Any] = {}  # a multi-platform build's base per platform

    # ---- steps by key (notebook cells)
    @staticmethod
    def step(kind: str, *args: Any, **kwargs: Any) -> Step:
        """A validated step without adding it (`Recipe.step("env", A="1")`)."""
        if kind not in KINDS:
            raise BuildError(f"unknown step {kind!r}; the steps are: {', '.join(KINDS)}.")
        scratch = Recipe()
        getattr(scratch, kind)(*args, **kwargs)
        return scratch.steps[-1]

    def put(self, step: Step, *, key: str | None = None, origin: Any = None) -> Step:
        """Add `step`; if a step with the same `key` exists it is replaced in place."""
        if key is not None:
            step.key = key
        if origin is not None:
            step.origin = origin
        if step.key is not None:
            for i, s in enumerate(self.steps):
                if s.key == step.key:
                    self.steps[i] = step
                    return step
        self.steps.append(step)
        return step

    def drop(self, key: str) -> bool:
        """Remove the step(s) with `key` (a deleted cell); True if there were any."""
        before = len(self.steps)
        self.steps = [s for s in self.steps if s.key != key]
        return len(self.steps) != before

    def _add(self, kind: str, args: dict, content: bytes | None = None) -> "Recipe":
        self.steps.append(Step(kind, args, content))
        return self

    # ---- layer steps
    def file(self, path: str, text: str | bytes, mode: int | str = 0o644, *,
             owner: Any = None, **options: Any) -> "Recipe":
        """A file whose content is `text` (a cell), in a layer of its own; `mode` kept as given."""
        check_options("file", options, ("mode", "owner"))
        image_path(path, "file path", relative_ok=True)
        if path.endswith("/"):
            raise BuildError(f"file path {path!r} ends with '/': name the file, e.g. "
                             f"{path}main.py.")
        if isinstance(text, str):
            data = text.encode("utf-8")
        elif isinstance(text, (bytes, bytearray)):
            data = bytes(text)
        else:
            raise BuildError(f"file content must be text or bytes, not {type(text).__name__}.")
        uid, gid = parse_owner(owner)
        return self._add("file", {"path": path, "mode": parse_mode(mode), "uid": uid,
                                  "gid": gid}, data)

    def copy(self, src: str | list[str], dest: str, *, chown: Any = None,
             chmod: int | str | None = None, **options: Any) -> "Recipe":
        """Files or folders of the build context (.dockerignore honoured), like Dockerfile COPY.

        Modes are normalised (0644, 0755 with an x bit) unless `chmod` is given.
        """
        check_options("copy", options, ("chown", "chmod"))
        srcs = [src] if isinstance(src, (str, os.PathLike)) else list(src)
        if not srcs or not all(isinstance(s, (str, os.PathLike)) and os.fspath(s).strip()
                               for s in srcs):
            raise BuildError(f"COPY needs at least one source path, not {src!r}.")
        image_path(dest, "COPY destination", relative_ok=True)
        uid, gid = parse_owner(chown)
        args: dict[str, Any] = {"src": [os.fspath(s) for s in srcs], "dest": dest}
        if uid or gid:
            args.update(uid=uid, gid=gid)
        if chmod is not None:
            args["chmod"] = parse_mode(chmod, "chmod")
        return self._add("copy", args)

    def pip(self, *requirements: str, index_url: str | None = None,
            find_links: list[str] | str | None = None, **options: Any) -> "Recipe":
        """Python packages for the image's own Python, installed from wheels, in one layer."""
        check_options("pip", options, ("index_url", "find_links"))
        reqs = [r.strip() for r in requirements if isinstance(r, str)]
        if not reqs or len(reqs) != len(requirements) or not all(reqs):
            raise BuildError(f"pip needs requirement strings such as 'pandas==2.2.3', got "
                             f"{requirements!r}.")
        args: dict[str, Any] = {"requirements": reqs}
        if index_url:
            args["index_url"] = str(index_url)
        if find_links:
            args["find_links"] = [find_links] if isinstance(find_links, str) else \
                [str(f) for f in find_links]
        return self._add("pip", args)

    def apt(self, *packages: str, mirror: str | None = None, snapshot: str | None = None,
            suite: str | None = None, keyring: list[str] | str | None = None,
            **options: Any) -> "Recipe":
        """Debian/Ubuntu packages (and their dependencies) from the base's own suite, one layer.

        No container: the packages are resolved against the base's dpkg database, downloaded
        from its mirror (or `mirror`, or Debian's `snapshot` archive at a timestamp such as
        20250520T000000Z), verified against the archive's signed InRelease (the base's
        keyrings, or `keyring` files) and unpacked; `dpkg -s` sees them. NAME=VERSION pins.
        """
        check_options("apt", options, ("mirror", "snapshot", "suite", "keyring"))
        specs = check_packages(packages)
        args: dict[str, Any] = {"packages": specs}
        for k, v in (("mirror", mirror), ("snapshot", snapshot), ("suite", suite)):
            if v:
                args[k] = str(v)
        if keyring:
            args["keyring"] = [keyring] if isinstance(keyring, str) else [str(k) for k in keyring]
        return self._add("apt", args)

    def apk(self, *packages: str, mirror: str | None = None,
            repository: list[str] | str | None = None, key: list[str] | str | None = None,
            **options: Any) -> "Recipe":
        """Alpine packages (and their dependencies) from the base's own repositories, one layer.

        No container: the packages are resolved against the base's /lib/apk/db/installed and
        each repository's APKINDEX (signature checked against the base's /etc/apk/keys and
        the `key` files), from the base's /etc/apk/repositories (or `repository` URLs, or the
        same on `mirror`); each .apk is checked against the index and unpacked, and apk's
        database records it. NAME=VERSION pins.
        """
        check_options("apk", options, ("mirror", "repository", "key"))
        args: dict[str, Any] = {"packages": check_apk_packages(packages)}
        if mirror:
            args["mirror"] = str(mirror)
        for k, v in (("repository", repository), ("key", key)):
            if v:
                args[k] = [v] if isinstance(v, str) else [str(x) for x in v]
        return self._add("apk", args)

    def remove(self, *paths: str) -> "Recipe":
        """A layer of whiteouts: each path (and everything under it) disappears from the image."""
        if not paths:
            raise BuildError("remove needs at least one path, e.g. r.remove('/tmp/cache').")
        for p in paths:
            image_path(p, "path to remove", relative_ok=True)
            if not p.strip("/").strip("."):
                raise BuildError("removing / would remove the whole filesystem; name what to "
                                 "remove.")
        return self._add("remove", {"paths": list(paths)})

    def run(self, cmd: str | list[str]) -> "Recipe":
        """A command run in a container: needs an engine (the embedded builder refuses it)."""
        if not cmd:
            raise BuildError("RUN needs a command.")
        return self._add("run", {"command": cmd if isinstance(cmd, str) else command(cmd, "RUN")})

    # ---- config steps
    def env(self, mapping: dict[str, Any] | None = None, /, **vars: Any) -> "Recipe":
        """Environment variables of the image (`r.env(PYTHONUNBUFFERED="1")`)."""
        items = {**(mapping or {}), **vars}
        if not items:
            raise BuildError("env needs at least one variable, e.g. r.env(LANG='C.UTF-8').")
        return self._add("env", {"vars": {env_name(k): str(v) for k, v in items.items()}})

    def label(self, mapping: dict[str, Any] | None = None, /, **labels: Any) -> "Recipe":
        items = {**(mapping or {}), **labels}
        if not items:
            raise BuildError("label needs at least one key=value.")
        return self._add("label", {"labels": {str(k): str(v) for k, v in items.items()}})

    def workdir(self, path: str) -> "Recipe":
        image_path(path, "WORKDIR", relative_ok=True)
        return self._add("workdir", {"path": path})

    def user(self, user: str | int) -> "Recipe":
        text = str(user).strip()
        if not text or any(c.isspace() for c in text):
            raise BuildError(f"USER {user!r} is not a user: give a name or uid[:gid].")
        return self._add("user", {"user": text})

    def cmd(self, cmd: str | list[str]) -> "Recipe":
        """The default command: a list (exec form) or a string run by /bin/sh -c."""
        return self._add("cmd", {"command": command(cmd, "CMD")})

    def entrypoint(self, cmd: str | list[str]) -> "Recipe":
        return self._add("entrypoint", {"command": command(cmd, "ENTRYPOINT")})

    def expose(self, *ports: int | str) -> "Recipe":
        if not ports:
            raise BuildError("expose needs at least one port, e.g. r.expose(8888).")
        return self._add("expose", {"ports": [port(p) for p in ports]})

    def arg(self, name: str, default: str | None = None) -> "Recipe":
        """A build argument (Dockerfile ARG); it changes nothing in the image by itself."""
        return self._add("arg", {"name": env_name(name),
                                 "default": None if default is None else str(default)})

    # ---- building
    def build(self, tag: str | None = None, *, engine: Any = None, store: Any = None,
              compression: str | None = None, progress: Any = None):
        """Build and store the image (tagged `tag`); returns an nbimages.Image.

        `engine=None` builds embedded (no daemon), or with the Docker engine when the recipe
        has RUN steps and one answers. Another engine (a name or an object with
        `build_recipe(recipe, tag, **kw)`) takes the whole recipe, RUN steps included.
        """
        if tag is not None:
            _check_tag(tag)
        if self.platforms is not None:
            return self._build_platforms(tag, engine, store, compression, progress)
        if engine is None:
            self._refuse_foreign_run()
        if engine is None and any(step.kind == "run" for step in self.steps):
            # RUN needs a container: use the Docker engine when one answers (its absence
            # gives the builder's own error naming the engine).
            found = provided("engine")("auto")
            if found.name == "docker":
                engine = found
        if engine in (None, "embedded"):
            return build_recipe(self, tag, store=store, compression=compression,
                                progress=progress)
        eng = engine
        if isinstance(engine, str):
            eng = provided("engine")(engine)  # engines sit above the builder
        builder = getattr(eng, "build_recipe", None)
        if builder is None:
            raise BuildError(f"the engine {engine!r} cannot build recipes yet; build embedded "
                             "(engine=None) without RUN steps.")
        return builder(self, tag, store=store, progress=progress)

    def check_pip(self, step: Step, store: Any = None) -> None:
        """Resolve a pip step's requirements for the base's Python now (BuildError if they
        do not resolve); the notebook calls this when the cell runs."""
        from_store = store or default_store()
        base = self._open_base(from_store)
        if base is not None:
            check_requirements(base, list(step.args["requirements"]),
                               index_url=step.args.get("index_url"),
                               find_links=step.args.get("find_links"), store=from_store)

    def _refuse_foreign_run(self) -> None:
        """A RUN step for another platform than this machine's runs only when asked for."""
        runs = [i + 1 for i, s in enumerate(self.steps) if s.kind == "run"]
        if not runs or self.platform is None:
            return
        want, host = Platform.parse(self.platform), Platform.host()
        if host.matches(want):
            return
        raise BuildError(
            f"step {runs[0]} ({self.steps[runs[0] - 1].describe()}) runs a command in a "
            f"container, and {want} is not this machine's platform ({host}): it would run "
            "emulated. Ask for it explicitly with engine='docker' (the Docker engine runs "
            f"{want} containers through binfmt/QEMU when the handler is registered, e.g. "
            "Debian's qemu-user-static), or replace the RUN by steps that need no container "
            "(file, copy, pip, remove), which the embedded builder makes for any platform.")

    def _build_platforms(self, tag, engine, store, compression, progress):
        runs = [i + 1 for i, s in enumerate(self.steps) if s.kind == "run"]
        if runs:
            raise BuildError(
                f"step {runs[0]} ({self.steps[runs[0] - 1].describe()}) runs a command in a "
                "container, and a multi-platform build makes every platform without one (no "
                "emulation). Replace the RUN by steps that need no container (file, copy, pip, "
                "remove), or build each platform on its own with platform='linux/arm64' and "
                "engine='docker' on an engine that runs that platform (natively, or through "
                "binfmt/QEMU).")
        if engine not in (None, "embedded"):
            raise BuildError(f"a multi-platform build (platforms={self.platforms!r}) is made by "
                             f"the embedded builder; leave engine= out (got {engine!r}).")
        return build_platforms(self, tag, self.platforms, store=store, compression=compression,
                               progress=progress)

    def refresh_base(self) -> None:
        """Open the base again at the next build (it is otherwise resolved once per recipe)."""
        self._base_image = None
        self._bases = {}

    def _open_base(self, store, platform=None):
        if platform is not None:  # one platform of a multi-platform build
            if str(platform) not in self._bases:
                self._bases[str(platform)] = open_base(self.base, platform, store)
            return self._bases[str(platform)]
        if self._base_image is None:
            self._base_image = open_base(self.base, self.platform, store)
        return self._base_image

    def _pin_base(self, store, base, platform=None) -> None:
        """After a build the base's blobs are in the store: later builds read them there."""
        desc = Descriptor(base.manifest.media_type, base.digest, len(base.manifest.raw))
        try:
            img = store.image(desc, source=base.source)
            img.names = list(base.names)
        except Exception:  # noqa: BLE001 - keep the original source if the store copy fails
            return
        if platform is not None:
            self._bases[str(platform)] = img
        else:
            self._base_image = img

    # ---- showing
    def to_dockerfile(self, files_dir: str | None = None, *, built: Image | None = None) -> str:
        """The equivalent Dockerfile (file steps as heredocs, or COPY from `files_dir`).

        With the image a build made (`built`), the base is pinned by digest (`FROM
        name@sha256:…`) and the pip packages by the versions the build installed."""
        if built is None:
            return dockerfile_text(self.base, self.steps, files_dir=files_dir)
        try:
            pins = json.loads(built.labels.get(PIP_LABEL) or "[]")
        except ValueError:
            pins = []
        digest = (built.manifest.annotations or {}).get(BASE_DIGEST_ANNOTATION)
        return dockerfile_text(self.base, self.steps, files_dir=files_dir, base_digest=digest,
                               pins=pins)

    def write_context(self, directory: str | os.PathLike, files_dir: str = ".nbimages-files"
                      ) -> Path:
        """Write a Dockerfile plus the file steps' contents into `directory` for `docker build`.

        COPY sources are expected in `directory` too (pass the recipe's own context).
        """
        return write_context(self.base, self.steps, Path(directory), files_dir)

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame([{"step": i + 1, "cell": s.cell, "kind": s.kind,
                              "instruction": s.describe(), "origin": s.origin, "key": s.key}
                             for i, s in enumerate(self.steps)],
                            columns=["step", "cell", "kind", "instruction", "origin", "key"])

    def __repr__(self) -> str:
        plats = self.platforms if self.platforms is not None else None
        where = (" for " + (plats if isinstance(plats, str) else ", ".join(map(str, plats)))
                 if plats is not None else "")
        lines = [f"<Recipe from {self.base}{where}: {len(self.steps)} steps>"]
        lines += [f"  {i + 1:>2}. {s.cell:>9}  {s.describe()}" for i, s in enumerate(self.steps)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return (f"<p><b>Recipe</b> from <code>{html.escape(self.base)}</code>, "
                f"{len(self.steps)} steps (remove one with <code>%image recipe --remove N"
                "</code>)</p>" + self.to_frame()[["step", "cell", "instruction"]].to_html(index=False)
                + "<pre>" + html.escape(self.to_dockerfile()) + "</pre>")


def _check_tag(tag: str) -> None:
    """A build's tag must be a name docker and the other verbs accept, before anything is built."""
    ref = Reference.parse(tag)
    if ref.digest:
        raise InvalidReference(f"the build tag {tag!r} has a digest; a build names a tag "
                               "(NAME[:TAG], e.g. handout:1) and gets its digest from the build.")
