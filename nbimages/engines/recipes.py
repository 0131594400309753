"""A Recipe as a Docker build: one Dockerfile instruction per step, and the context tar it reads.

Written for the legacy builder (the one every engine has): each file/copy/pip/remove/run
step becomes one COPY or RUN, so one layer, and the config steps become metadata
instructions (empty layers). A file step's bytes and mode travel in the context tar under
`.nbimages/`, since legacy COPY has no --chmod and no heredocs; the recipe's own context
directory is sent only when a copy step needs it, filtered by its .dockerignore.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from ..builder.dockerfile_writer import package_install
from ..builder.steps import chown_flag
from ..errors import BuildError

PREFIX = ".nbimages"
DOCKERFILE = f"{PREFIX}/Dockerfile"


@dataclass
class EngineBuild:
    """What an engine build needs: Dockerfile text, the context tar, network, step names."""

    dockerfile: str
    context: IO[bytes]
    needs_network: bool
    step_names: dict[int, str]   # Dockerfile step number -> "recipe step 3 (RUN make)"


def instruction(step, index: int, files: list[tuple[str, bytes, int]]) -> str:
    """The Dockerfile line of one recipe step; file contents are added to `files`."""
    a = step.args
    if step.kind == "file":
        name = f"{PREFIX}/files/{index}"
        files.append((name, step.content or b"", a.get("mode", 0o644)))
        return f"COPY{chown_flag(a)} {json.dumps([name, a['path']])}"
    if step.kind == "copy":
        if a.get("chmod") is not None:
            raise BuildError(f"step {index} ({step.describe()}): COPY --chmod needs BuildKit, "
                             "which the engine's legacy builder lacks; build this recipe "
                             "embedded, or set the mode on the files in the context.")
        return f"COPY{chown_flag(a)} {json.dumps([*a['src'], a['dest']])}"
    if step.kind == "pip":
        cmd = ["python3", "-m", "pip", "install", "--no-cache-dir", "--root-user-action=ignore"]
        if a.get("index_url"):
            cmd += ["--index-url", a["index_url"]]
        for link in a.get("find_links") or []:
            cmd += ["--find-links", link]
        return "RUN " + json.dumps(cmd + list(a["requirements"]))
    if step.kind in ("apt", "apk"):  # on the engine, the distribution's own tool does it
        return package_install(step)
    if step.kind == "remove":
        return "RUN " + json.dumps(["rm", "-rf", "--", *a["paths"]])
    if step.kind == "run":
        command = a["command"]
        if isinstance(command, str) and ("\n" in command or command.rstrip().endswith("\\")):
            command = ["/bin/sh", "-c", command]  # the shell form, kept intact across lines
        return "RUN " + (json.dumps(command) if isinstance(command, list) else command)
    # Config steps: describe() is already Dockerfile syntax (values shell-quoted).
    return step.describe()


def dockerfile(recipe, base_ref: str) -> tuple[str, list[tuple[str, bytes, int]], dict[int, str]]:
    """Dockerfile text, the generated files, and names for error messages."""
    files: list[tuple[str, bytes, int]] = []
    lines = [f"FROM {base_ref}"]
    names: dict[int, str] = {}
    for i, step in enumerate(recipe.steps, start=1):
        lines.append(instruction(step, i, files))
        origin = f", {step.origin}" if step.origin not in (None, "") else ""
        names[i + 1] = f"recipe step {i} ({step.describe()}{origin})"
    return "\n".join(lines) + "\n", files, names


def _dockerignore(root: Path) -> list[str]:
    try:
        text = (root / ".dockerignore").read_text()
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@contextlib.contextmanager
def engine_build(recipe, base_ref: str) -> Iterator[EngineBuild]:
    """The recipe's Dockerfile and context tar (a temporary file, removed afterwards)."""
    from docker.utils.build import create_archive, exclude_paths
    text, files, names = dockerfile(recipe, base_ref)
    needs_context = any(s.kind == "copy" for s in recipe.steps)
    root = Path(recipe.context)
    if needs_context and not root.is_dir():
        raise BuildError(f"the recipe's context {root} is not a directory, and its copy steps "
                         "read from it; create it or pass Recipe(context=...).")
    with tempfile.TemporaryFile(prefix="nbimages-context-") as tar_file:
        if needs_context:
            paths = sorted(exclude_paths(str(root), _dockerignore(root), dockerfile=DOCKERFILE))
            create_archive(str(root), [p for p in paths if not p.startswith(PREFIX + "/")
                                       and p != PREFIX], fileobj=tar_file)
            tar_file.seek(0)
            mode = "a"
        else:
            mode = "w"
        with tarfile.open(fileobj=tar_file, mode=mode) as tar:
            for name, data, file_mode in files + [(DOCKERFILE, text.encode(), 0o644)]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), file_mode, 0
                tar.addfile(info, io.BytesIO(data))
        tar_file.seek(0)
        online = any(s.kind in ("pip", "apt", "apk") for s in recipe.steps)  # index, mirror
        yield EngineBuild(text, tar_file, online, names)
