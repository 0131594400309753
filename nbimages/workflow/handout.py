"""A handout bundle: a notebook's image as files anyone can load, run and verify.

    h = handout("analysis.ipynb", "handout/")      # `nbimages handout analysis.ipynb -o handout/`

writes into the folder: `image.oci.tar` (an OCI archive, for skopeo, podman, umoci...),
`image.docker.tar` (for `docker load`), `Dockerfile` (the recipe as a Dockerfile) and
`README.md` (the digest, the pins, and the commands to load, run and verify it). The files are
written under temporary names and moved into place together at the end, so a failure leaves
the folder as it was. The build is recorded in the notebook's metadata.

The `nbimages build NOTEBOOK.ipynb`, `nbimages verify` and `nbimages handout` command-line
verbs are defined at the end (cli.py routes to them).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
import json
from ..builder.apk import APK_LABEL
from ..builder.apt import APT_LABEL
from ..builder.dockerfile_writer import local_only_base
from ..builder.embedded import PIP_LABEL
from ..builder.steps import cell_name
from ..sources import save
from .notebook_recipe import build_notebook
from .verify import image_epoch

__all__ = ["handout", "Handout", "FILES"]

FILES = {"oci": "image.oci.tar", "docker": "image.docker.tar", "dockerfile": "Dockerfile",
         "readme": "README.md"}


@dataclass
class Handout:
    """The files of a handout and the image they hold."""

    directory: Path
    image: Any
    tag: str
    notebook: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return self.image.digest

    def path(self, what: str) -> Path:
        return self.directory / FILES[what]

    def __repr__(self) -> str:
        lines = [f"<Handout {self.tag} {self.digest} in {self.directory}>"]
        lines += [f"  {self.path(k)}" for k in FILES]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def handout(notebook: str | os.PathLike, directory: str | os.PathLike, *,
            tag: str | None = None, store: Any = None, progress: Any = None) -> Handout:
    """Build the notebook's image and write the handout files into `directory`."""
    nb = Path(notebook).expanduser().resolve()
    image = build_notebook(nb, tag, store=store, progress=progress)
    name = tag or image.tag or f"{_slug(nb.stem)}:handout"
    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".nbimages-handout-", dir=out))
    try:
        save(image, staging / FILES["oci"], format="oci", tag=name)
        save(image, staging / FILES["docker"], format="docker", tag=name)
        recipe = image.recipe
        dockerfile = recipe.to_dockerfile(built=image) if recipe is not None else ""
        (staging / FILES["dockerfile"]).write_text(dockerfile, encoding="utf-8")
        (staging / FILES["readme"]).write_text(readme(image, name, nb, out), encoding="utf-8")
        for key in FILES:
            os.replace(staging / FILES[key], out / FILES[key])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Handout(out, image, name, nb, local_base_warnings(image.recipe))


def local_base_warnings(recipe: Any) -> list[str]:
    """A base that exists only on this machine: nobody else can rebuild the handout."""
    base = getattr(recipe, "base", None)
    if not base or not local_only_base(base):
        return []
    return [f"the base {base} exists only on this machine: others can load the image tars "
            "but cannot rebuild it. Push the base to a registry (`nbimages push`) and start the "
            "notebook with `%image from REGISTRY/NAME@sha256:…`."]


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug or "notebook"


def _label_list(image: Any, label: str) -> list:
    """The JSON list in one of the image's pin labels; [] when missing or unreadable."""
    with contextlib.suppress(ValueError, TypeError):
        return json.loads(image.labels.get(label) or "[]")
    return []


def readme(image: Any, tag: str, notebook: Path, directory: Path | None = None) -> str:
    """The handout's README: what the image is, exactly, and how to load, run and verify it.

    The verify and build commands run in the notebook's folder (the cells copy files from
    there), so they name the handout's files by their path from that folder.
    """
    pins, debs, apks = (_label_list(image, label) for label in (PIP_LABEL, APT_LABEL, APK_LABEL))
    recipe = image.recipe
    report = list(image.build_report or [])
    cmd = image.container_config.get("Cmd") or []
    entry = image.container_config.get("Entrypoint") or []
    ports = sorted(image.container_config.get("ExposedPorts") or {})
    publish = "".join(f" -p {p.split('/')[0]}:{p.split('/')[0]}" for p in ports)
    q = shlex.quote
    here = "."
    if directory is not None:
        here = os.path.relpath(Path(directory).resolve(), notebook.parent)
    oci_there = q(os.path.join(here, FILES["oci"]) if here != "." else FILES["oci"])
    epoch = image_epoch(image.config) or 0
    env = f"SOURCE_DATE_EPOCH={epoch} " if epoch else ""
    dockerfile = (recipe.to_dockerfile(built=image) if recipe is not None else "")
    lines = [
        f"# {tag}",
        "",
        f"The container image of the notebook `{notebook.name}`, built by nbimages from the",
        "notebook's `%image` cells. Anyone can rebuild it and get the same digest.",
        "",
        f"- manifest digest: `{image.digest}`",
        f"- image ID (config digest, independent of compression): `{image.id}`",
        f"- base: `{getattr(recipe, 'base', '?')}`",
        f"- platform: `{image.platform}`",
        f"- command: `{' '.join(entry + cmd) or '(the base image command)'}`",
        *[f"- **warning**: {w}" for w in local_base_warnings(recipe)],
        "",
        "## Files",
        "",
        f"- `{FILES['docker']}`: the image for `docker load`",
        f"- `{FILES['oci']}`: the same image as an OCI archive (skopeo, podman, umoci)",
        f"- `{FILES['dockerfile']}`: the recipe as a Dockerfile",
        "",
        "## Load and run",
        "",
        "```sh",
        f"docker load -i {FILES['docker']}",
        f"docker run --rm{publish} {q(tag)}",
        "```",
        "",
        "Or with any OCI tool:",
        "",
        "```sh",
        f"skopeo copy oci-archive:{FILES['oci']} docker-daemon:{q(tag)}",
        f"podman load -i {FILES['oci']}",
        "```",
        "",
        "## Verify",
        "",
        f"In the folder of the notebook `{notebook.name}` (its cells copy files from there),",
        "rebuild the image in a clean store and compare the digest:",
        "",
        "```sh",
        f"{env}nbimages verify {q(notebook.name)} --digest {image.digest}",
        "```",
        "",
        "On a mismatch it names the layer (and the notebook cell) that differs, and the files",
        f"in it; `--expected oci-archive:{oci_there}` compares with this handout's layers.",
    ]
    if epoch:
        lines += ["", f"It was built with `SOURCE_DATE_EPOCH={epoch}` (the files' dates): a",
                  "rebuild needs the same value to give the same digest."]
    lines += _outputs_section(pins, tag, notebook.name, image.digest, env)
    if dockerfile:
        there = q(os.path.join(here, FILES["dockerfile"]) if here != "." else FILES["dockerfile"])
        need = (" (its file cells are heredocs: BuildKit, Docker 23 or newer)"
                if dockerfile.startswith("# syntax=") else "")
        lines += ["", f"To build it with Docker instead{need}, in the same folder:", "",
                  "```sh", f"docker build -f {there} -t {q(tag)} .", "```"]
    if pins:
        lines += ["", "## Python packages", "", "| package | version | wheel sha256 |",
                  "|---|---|---|"]
        lines += [f"| {p.get('name')} | {p.get('version')} | `{p.get('sha256', '')}` |"
                  for p in pins]
    if debs:
        lines += ["", "## System packages", "", "| package | version | architecture | .deb sha256 |",
                  "|---|---|---|---|"]
        lines += [f"| {p.get('name')} | {p.get('version')} | {p.get('architecture')} | "
                  f"`{p.get('sha256', '')}` |" for p in debs]
    if apks:
        lines += ["", "## Alpine packages", "",
                  "| package | version | architecture | index checksum | .apk sha256 |",
                  "|---|---|---|---|---|"]
        lines += [f"| {p.get('name')} | {p.get('version')} | {p.get('architecture')} | "
                  f"`{p.get('checksum', '')}` | `{p.get('sha256', '')}` |" for p in apks]
    if report:
        lines += ["", "## Steps", "", "| step | cell | instruction | layer diff_id |",
                  "|---|---|---|---|"]
        for r in report:
            instr = r["instruction"].split(" # sha256:")[0].replace("|", "\\|")
            if len(instr) > 90:
                instr = instr[:89] + "…"
            cell = cell_name(r.get("origin"))
            lines.append(f"| {r['step']} | {cell} | `{instr}` | "
                         f"{'`' + r['diff_id'] + '`' if r.get('diff_id') else ''} |")
    return "\n".join(lines) + "\n"


JUPYTERLAB_PORT = 8888


def jupyterlab_command(tag: str, notebook: str, port: int = JUPYTERLAB_PORT) -> str:
    """One `docker run` that opens the notebook (from the current folder) in JupyterLab inside
    the image: host network on 127.0.0.1, the caller's uid so saved files stay theirs."""
    q = shlex.quote
    return (f'docker run --rm --network host --user "$(id -u):$(id -g)" -e HOME=/tmp '
            f'-v "$PWD":/home/notebook -w /home/notebook {q(tag)} python3 -m jupyterlab '
            f"--no-browser --allow-root --ip=127.0.0.1 --port={port} {q(notebook)}")


def _outputs_section(pins: list, tag: str, notebook: str, digest: str, env: str) -> list[str]:
    """README sections: check the notebook's outputs in the image, open it in JupyterLab."""
    q = shlex.quote
    names = {str(p.get("name", "")).lower().replace("_", "-") for p in pins}
    lines = ["", "## Check the outputs", "",
             "The image also vouches for the notebook's results: run its cells in a kernel inside",
             "the image (Docker engine) and compare every cell's outputs with the saved ones:", "",
             "```sh",
             f"{env}nbimages verify {q(notebook)} --digest {digest} --execute",
             f"nbimages execute {q(notebook)} --image {q(tag)}   # outputs only, after docker load",
             "```", "",
             "Both exit with status 0 only when every cell gives its saved output again (a table",
             "names the cells that differ); `--ignore-cell N` or the cell tag `nbimages-volatile`",
             "leaves out cells whose output changes from run to run (times, random numbers)."]
    if "ipykernel" not in names:
        lines += ["", "The pinned packages do not include ipykernel: unless the base image has it,",
                  "add `%image pip ipykernel` to the notebook to make its outputs checkable."]
    lines += ["", "## Open the notebook in JupyterLab", ""]
    if "jupyterlab" in names:
        lines += ["In this folder, after `docker load`, JupyterLab runs inside the image:", "",
                  "```sh", jupyterlab_command(tag, notebook), "```", "",
                  f"and prints the address to open (http://127.0.0.1:{JUPYTERLAB_PORT}/lab?token=…)."]
    else:
        lines += ["JupyterLab is not in the image (add `%image pip jupyterlab` to open the",
                  "notebook with one `docker run`). To use the image as a kernel of your own",
                  "JupyterLab instead:", "", "```sh", f"nbimages kernel install {q(tag)}", "```"]
    return lines

