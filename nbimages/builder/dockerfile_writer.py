"""Write a Recipe as a Dockerfile (and the build context its COPY lines read).

The reading direction is dockerfile.py, which makes Recipes; this module takes a recipe's
base and steps, so recipe.py can offer `to_dockerfile()` without importing the reader and
without this module knowing Recipe.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from .steps import Step, chown_flag, copy_flags


def _dq(value: str) -> str:
    if value and re.match(r"^[A-Za-z0-9_./:,@%+=-]+$", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") \
        .replace("\n", "\\n") + '"'


LOCAL_PREFIXES = ("docker-daemon:", "store:", "oci:", "oci-archive:", "docker-archive:")


def local_only_base(base: str) -> bool:
    """True for a base that exists only where the image was built (the local engine, the
    local store, a file): nobody else can pull it by that name."""
    return base.startswith(LOCAL_PREFIXES) or bool(re.match(r"^[a-z-]+:(/|\.)", base))


def _pin_from(line: str, base_digest: str | None) -> str:
    """`FROM name:tag` -> `FROM name:tag@sha256:…`: a rebuild gets the very same base."""
    if not base_digest or not line.startswith("FROM ") or "@" in line or line == "FROM scratch":
        return line
    return f"{line}@{base_digest}"


def _pinned_requirements(reqs: list[str], pins: dict[str, str]) -> list[str]:
    """`six` -> `six==1.16.0` with the version the build installed (URLs kept as written)."""
    out = []
    for text in reqs:
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*([^@;]*)(;.*)?$", text)
        key = re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else None
        if m and key in pins:
            out.append(f"{m.group(1)}{m.group(2) or ''}=={pins[key]}")
        else:
            out.append(text)
    return out


def _from_line(base: str) -> str:
    if base.startswith("docker://"):
        return f"FROM {base[len('docker://'):]}"
    if base.startswith("docker-daemon:"):
        return f"FROM {base[len('docker-daemon:'):]}"
    if base.startswith("store:"):
        return f"FROM {base[len('store:'):]}"
    if re.match(r"^[a-z-]+:(/|\.)", base) or base.startswith(("oci:", "oci-archive:",
                                                               "docker-archive:")):
        return (f"# base image from {base}: load it into the engine and name it here\n"
                f"FROM {Path(base.split(':', 1)[1].split(':')[0]).name or 'base'}")
    return f"FROM {base}"


def package_install(step: Step) -> str:
    """The RUN line that installs an apt or apk step's packages with the distribution's own
    tool (package names are checked when the step is added: no shell quoting needed)."""
    packages = " ".join(step.args["packages"])
    if step.kind == "apk":
        return f"RUN apk add --no-cache {packages}"
    return (f"RUN apt-get update && apt-get install -y --no-install-recommends {packages} "
            "&& rm -rf /var/lib/apt/lists/*")


def _step_lines(step: Step, files_dir: str | None, index: int) -> str:
    a = step.args
    k = step.kind
    if k == "file":
        chown = chown_flag(a)
        if files_dir is not None:
            return f"COPY{chown} {files_dir}/{_file_name(step, index)} {a['path']}"
        text = (step.content or b"").decode("utf-8", "replace")
        marker = "NBIMAGES_EOF"
        while marker in text:
            marker += "_"
        return (f"COPY{chown} --chmod={a['mode']:o} <<'{marker}' {a['path']}\n"
                f"{text.rstrip(chr(10))}\n{marker}")
    if k == "copy":
        flags = copy_flags(a)
        parts = a["src"] + [a["dest"]]
        instr = "ADD" if a.get("add") else "COPY"
        if any(" " in p for p in parts):
            return f"{instr}{flags} {json.dumps(parts)}"
        return f"{instr}{flags} {' '.join(parts)}"
    if k == "pip":
        opts = f" --index-url {a['index_url']}" if a.get("index_url") else ""
        opts += "".join(f" --find-links {f}" for f in a.get("find_links") or [])
        return "RUN pip install --no-cache-dir" + opts + " " + " ".join(
            _dq(r) if " " in r or "<" in r or ">" in r else r for r in a["requirements"])
    if k in ("apt", "apk"):
        return package_install(step)
    if k == "remove":
        return "RUN rm -rf " + " ".join(_dq(p) for p in a["paths"])
    if k == "run":
        c = a["command"]
        return "RUN " + (json.dumps(c) if isinstance(c, list) else c)
    if k == "env":
        return "ENV " + " ".join(f"{n}={_dq(v)}" for n, v in a["vars"].items())
    if k == "label":
        return "LABEL " + " ".join(f"{_dq(n)}={_dq(v)}" for n, v in a["labels"].items())
    if k == "workdir":
        return f"WORKDIR {a['path']}"
    if k == "user":
        return f"USER {a['user']}"
    if k in ("cmd", "entrypoint"):
        return f"{k.upper()} {json.dumps(a['command'], ensure_ascii=False)}"
    if k == "expose":
        return "EXPOSE " + " ".join(p[:-4] if p.endswith("/tcp") else p for p in a["ports"])
    if k == "arg":
        return f"ARG {a['name']}" + (f"={_dq(a['default'])}" if a.get("default") is not None
                                     else "")
    return f"# {step.describe()}"


def _file_name(step: Step, index: int) -> str:
    base = os.path.basename(step.args["path"]) or "file"
    return f"{index:03d}-{base}"


def dockerfile_text(base: Any, steps: Sequence[Step], files_dir: str | None = None, *,
                   base_digest: str | None = None, pins: list[dict] | None = None) -> str:
    """A Recipe's base and steps as Dockerfile text (file steps as heredocs, or as COPY from
    `files_dir` when given). With what a build recorded (`base_digest`, the pip `pins`) the
    base is pinned by digest and every package by version, dependencies included (on the first
    pip line), so `docker build` installs what the image has."""
    lines = []
    uses_heredoc = files_dir is None and any(s.kind == "file" for s in steps)
    if uses_heredoc:
        lines.append("# syntax=docker/dockerfile:1.4")
    if local_only_base(base):
        lines.append(f"# WARNING: the base {base} exists only on the machine that built "
                     "this image; push it to a registry and name it here to rebuild elsewhere")
    head = _from_line(base).split("\n")
    lines += head[:-1] + [_pin_from(head[-1], base_digest)]
    versions = {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in pins or []}
    unlisted = dict(versions)
    for step in steps:
        if step.kind == "pip":
            for r in step.args["requirements"]:
                m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
                if m:
                    unlisted.pop(re.sub(r"[-_.]+", "-", m.group(1)).lower(), None)
    for i, step in enumerate(steps):
        if step.kind == "pip" and versions:
            extra = [f"{n}=={v}" for n, v in sorted(unlisted.items())]
            unlisted = {}
            step = Step(step.kind, {**step.args, "requirements": _pinned_requirements(
                list(step.args["requirements"]), versions) + extra}, step.content)
        lines.append(_step_lines(step, files_dir, i + 1))
    return "\n".join(lines) + "\n"


def write_context(base: Any, steps: Sequence[Step], directory: Path, files_dir: str) -> Path:
    """Dockerfile + file-step contents (with their modes) in `directory`; returns the Dockerfile."""
    directory.mkdir(parents=True, exist_ok=True)
    fdir = directory / files_dir
    for i, step in enumerate(steps):
        if step.kind == "file":
            fdir.mkdir(parents=True, exist_ok=True)
            p = fdir / _file_name(step, i + 1)
            p.write_bytes(step.content or b"")
            os.chmod(p, step.args["mode"])
    path = directory / "Dockerfile"
    path.write_text(dockerfile_text(base, steps, files_dir=files_dir), encoding="utf-8")
    return path
