"""A recipe: a base image and an ordered list of steps, built into an image without Docker.

    r = nbimages.Recipe("python:3.12-slim")
    r.file("/app/clean.py", text); r.copy("data/", "/data/"); r.pip("pandas==2.2.3")
    r.env(PYTHONUNBUFFERED="1"); r.cmd(["python", "/app/clean.py"])
    img = r.build("handout:1"); print(r.to_dockerfile())

Each file/copy/pip/remove step makes one layer; the other steps change only the config.
Steps carry a `key` (a notebook cell id) so re-running a cell replaces its step in place
(`put`), and an `origin` (execution count, Dockerfile line) shown in the build report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import html
from ..errors import BuildError, InvalidReference
from ..image import Image
from ..oci.descriptor import Descriptor
from ..reference import Reference
from ..verbs import provided
from .dockerfile_writer import dockerfile_text, write_context
from .embedded import build_recipe, open_base
from .steps import (KINDS, Step, check_options, command, env_name, image_path, parse_mode,
                    parse_owner, port)


class Recipe:
    """A base image plus steps. The base is `"scratch"`, any source nbimages.open_image
    accepts (`python:3.12-slim`, `oci:DIR:TAG`, `docker-daemon:REF`, ...) or an Image."""

    def __init__(self, base: "str | Any" = "scratch", *, context: str | os.PathLike = ".",
                 platform: str | None = None, compression: str | None = None):
        base_image = None
        if isinstance(base, Image):
            base_image = base
            base = base.names[0] if base.names else (base.source or base.digest)
        if not isinstance(base, str) or not base.strip():
            raise BuildError(f"the base image {base!r} is not a name: give a reference such as "
                             "python:3.12-slim, a source such as oci:DIR:TAG, or 'scratch'.")
        self.base = base.strip()
        self.context = Path(os.path.abspath(os.fspath(context)))
        self.platform = platform
        self.compression = compression
        self.steps: list[Step] = []
        self.report = None
        self._base_image = base_image

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

    def refresh_base(self) -> None:
        """Open the base again at the next build (it is otherwise resolved once per recipe)."""
        self._base_image = None

    def _open_base(self, store):
        if self._base_image is None:
            self._base_image = open_base(self.base, self.platform, store)
        return self._base_image

    def _pin_base(self, store, base) -> None:
        """After a build the base's blobs are in the store: later builds read them there."""
        desc = Descriptor(base.manifest.media_type, base.digest, len(base.manifest.raw))
        try:
            img = store.image(desc, source=base.source)
            img.names = list(base.names)
            self._base_image = img
        except Exception:  # noqa: BLE001 - keep the original source if the store copy fails
            pass

    # ---- showing
    def to_dockerfile(self, files_dir: str | None = None) -> str:
        """The equivalent Dockerfile (file steps as heredocs, or COPY from `files_dir`)."""
        return dockerfile_text(self.base, self.steps, files_dir=files_dir)

    def write_context(self, directory: str | os.PathLike, files_dir: str = ".nbimages-files"
                      ) -> Path:
        """Write a Dockerfile plus the file steps' contents into `directory` for `docker build`.

        COPY sources are expected in `directory` too (pass the recipe's own context).
        """
        return write_context(self.base, self.steps, Path(directory), files_dir)

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame([{"step": i + 1, "kind": s.kind, "instruction": s.describe(),
                              "origin": s.origin, "key": s.key} for i, s in enumerate(self.steps)],
                            columns=["step", "kind", "instruction", "origin", "key"])

    def __repr__(self) -> str:
        lines = [f"<Recipe from {self.base}: {len(self.steps)} steps>"]
        lines += [f"  {i + 1:>2}. {s.describe()}" for i, s in enumerate(self.steps)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return (f"<p><b>Recipe</b> from <code>{html.escape(self.base)}</code>, "
                f"{len(self.steps)} steps</p>" + self.to_frame()._repr_html_()
                + "<pre>" + html.escape(self.to_dockerfile()) + "</pre>")


def _check_tag(tag: str) -> None:
    """A build's tag must be a name docker and the other verbs accept, before anything is built."""
    ref = Reference.parse(tag)
    if ref.digest:
        raise InvalidReference(f"the build tag {tag!r} has a digest; a build names a tag "
                               "(NAME[:TAG], e.g. handout:1) and gets its digest from the build.")
