"""Freeze the running kernel into a recipe: its Python, its exact packages, the notebook, data.

    r = nbimages.freeze("handout:1", imported=True, data=["data/sales.csv"])
    r                      # the steps, the packages left out (and why), the Dockerfile
    img = r.build()        # nothing is built before this

The base is `python:X.Y-slim` for the kernel's X.Y unless `base=` says otherwise. Packages
are the installed distributions pinned to their exact versions (`importlib.metadata`); with
`imported=True` only those providing a module in `sys.modules`, plus the installed
distributions they require, so pip cannot pick other versions of the dependencies. A
distribution installed from a local directory, a local file, version control or an editable
checkout cannot be installed again from an index: it is listed in `skipped` with the reason,
never silently dropped.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import html
from ..builder.recipe import Recipe
from ..builder.steps import command as command_form
from ..errors import BuildError
from .session import current

__all__ = ["freeze", "FrozenRecipe", "frozen_recipe", "use_in_session", "installed",
           "kernel_notebook", "FREEZE_MIME", "HANDOUT_DIR", "JUPYTER_PORT"]

HANDOUT_DIR = "/handout"
JUPYTER_PORT = 8888
FREEZE_MIME = "application/vnd.nbimages.freeze+json"
# Not pinned: the base image brings its own installer, and replacing it in a layer on top
# would shadow the base's files.
ALWAYS_SKIPPED = {"pip": "the package installer; the base image brings its own"}
_FRONTENDS = (("jupyterlab", "lab"), ("notebook", "notebook"), ("nbclassic", "nbclassic"))


class FrozenRecipe(Recipe):
    """A Recipe made by freeze(): it also knows its tag, its pins and what was left out."""

    def __init__(self, base: str, *, context: str | os.PathLike = ".", tag: str | None = None):
        super().__init__(base, context=context)
        self.tag = tag
        self.pins: list[str] = []
        self.skipped: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.notebook: Path | None = None
        self.record: dict[str, Any] = {}

    def build(self, tag: str | None = None, **kwargs: Any):  # type: ignore[override]
        """Build the image, tagged `tag` or the tag given to freeze()."""
        return super().build(tag or self.tag, **kwargs)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        """The freeze record travels in the cell's saved output: `nbimages build NOTEBOOK`
        reads it there, since the pins come from the kernel and cannot be found again."""
        return {FREEZE_MIME: self.record}

    def skipped_frame(self):
        import pandas as pd
        return pd.DataFrame(self.skipped, columns=["name", "version", "reason"])

    def __repr__(self) -> str:
        lines = [super().__repr__()]
        if self.tag:
            lines.insert(0, f"Frozen for {self.tag}:")
        if self.skipped:
            lines.append(f"Not pinned ({len(self.skipped)}):")
            lines += [f"  {s['name']} {s['version']}: {s['reason']}" for s in self.skipped]
        lines += [f"Note: {n}" for n in self.notes]
        lines += ["Dockerfile:", self.to_dockerfile()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        out = super()._repr_html_()
        if self.skipped:
            out += (f"<p><b>Not pinned</b> ({len(self.skipped)}): installed in a way an index "
                    "cannot reproduce</p>" + self.skipped_frame()._repr_html_())
        out += "".join(f"<p>Note: {html.escape(n)}</p>" for n in self.notes)
        return out


def freeze(tag: str | None = None, *, base: str | None = None, imported: bool = False,
           notebook: str | os.PathLike | bool | None = None,
           data: Iterable[str | os.PathLike] = (), command: Any = None,
           path: Sequence[str | os.PathLike] | None = None, index_url: str | None = None,
           find_links: list[str] | str | None = None) -> FrozenRecipe:
    """A recipe reproducing this kernel's environment; shown before anything is built.

    - `base`: the base image (default `python:X.Y-slim` for this kernel's Python).
    - `imported`: pin only the distributions providing imported modules (and what they need).
    - `notebook`: the notebook file to put in the image (default: the kernel's notebook when
      Jupyter tells it; False for none). Data files and folders in `data` go next to it.
    - `command`: the image's command: a list or a string (run as CMD), or a `.py` file that
      is copied in and run; default: open the notebook with Jupyter, if there is a notebook.
    - `path`: where to look for installed distributions (default: sys.path, this kernel).
    - `index_url` / `find_links`: where the pip step finds the wheels.
    """
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    nb = _notebook_path(notebook)
    context = nb.parent if nb is not None else Path.cwd()
    record: dict[str, Any] = {"version": 1, "python": py, "base": base or f"python:{py}-slim",
                              "tag": tag, "pins": [], "skipped": [], "notes": [],
                              "notebook": nb.name if nb is not None else None,
                              "data": [], "command": None, "index_url": index_url,
                              "find_links": [find_links] if isinstance(find_links, str)
                              else list(find_links or [])}

    dists = installed(path)
    chosen = _imported_closure(dists) if imported else dict(dists)
    frontend = None
    if command is None and nb is not None:
        frontend = next(((dist, sub) for dist, sub in _FRONTENDS if dist in dists), None)
        if frontend is not None and frontend[0] not in chosen:
            chosen.update(_closure(dists, [frontend[0]]))
    for key in sorted(chosen):
        dist = chosen[key]
        name, version = dist.metadata["Name"], dist.version
        reason = ALWAYS_SKIPPED.get(key) or _not_from_an_index(dist)
        if reason:
            record["skipped"].append({"name": name, "version": version, "reason": reason})
        else:
            record["pins"].append(f"{name}=={version}")

    for item in [data] if isinstance(data, (str, os.PathLike)) else data:
        rel = _inside(Path(item), context, "data file")
        record["data"].append(rel.as_posix() + ("/" if (context / rel).is_dir() else ""))
    if command is None:
        if nb is None:
            found = "" if notebook is False else \
                " (Jupyter did not tell the kernel which notebook it runs: pass notebook=)"
            record["notes"].append(f"no notebook{found} and no command: the image keeps the "
                                   "base's command; pass command= (a .py file or a command "
                                   "list).")
        else:
            if frontend is None:
                record["notes"].append("no Jupyter frontend (jupyterlab, notebook) is installed "
                                       "in this kernel, so the image cannot open the notebook: "
                                       "install jupyterlab, or pass command=.")
            record["command"] = {"jupyter": frontend[1] if frontend else "lab"}
    elif isinstance(command, (str, os.PathLike)) and str(command).endswith(".py") \
            and Path(command).is_file():
        record["command"] = {"script": _inside(Path(command), context, "script").as_posix()}
    else:
        record["command"] = {"cmd": command_form(command, "command")}
    return frozen_recipe(record, context)


def frozen_recipe(record: dict[str, Any], context: str | os.PathLike) -> FrozenRecipe:
    """The recipe of a freeze record (what freeze() saw in the kernel), files from `context`.

    freeze() and the notebook builder (which reads the record a `%image freeze` cell left in
    its output) both make their steps here, so both give the same image.
    """
    context = Path(context)
    recipe = FrozenRecipe(record["base"], context=context, tag=record.get("tag"))
    recipe.record = record
    recipe.pins = list(record.get("pins") or [])
    recipe.skipped = [dict(s) for s in record.get("skipped") or []]
    recipe.notes = list(record.get("notes") or [])
    if recipe.pins:
        recipe.pip(*recipe.pins, index_url=record.get("index_url"),
                   find_links=record.get("find_links") or None)
    for src in record.get("data") or []:
        recipe.copy(src, f"{HANDOUT_DIR}/{src}")
    nb_name = record.get("notebook")
    if nb_name:
        nb = context / nb_name
        if not nb.is_file():
            raise BuildError(f"the notebook {nb} does not exist any more; freeze again.")
        recipe.notebook = nb
        recipe.file(f"{HANDOUT_DIR}/{nb_name}", _notebook_bytes(nb))
    command = record.get("command") or {}
    if "script" in command:
        script = context / command["script"]
        if not script.is_file():
            raise BuildError(f"the script {script} does not exist any more; freeze again.")
        recipe.file(f"{HANDOUT_DIR}/{command['script']}", script.read_bytes())
    recipe.workdir(HANDOUT_DIR)
    if "jupyter" in command:
        recipe.expose(JUPYTER_PORT)
        recipe.cmd(["jupyter", command["jupyter"], "--ip=0.0.0.0", f"--port={JUPYTER_PORT}",
                    "--no-browser", "--allow-root", nb_name])
    elif "script" in command:
        recipe.cmd(["python3", f"{HANDOUT_DIR}/{command['script']}"])
    elif "cmd" in command:
        recipe.cmd(command["cmd"])
    return recipe


def use_in_session(recipe: FrozenRecipe, session: Any = None, *, line: str | None = None,
                   cell_id: str | None = None, execution_count: Any = None) -> FrozenRecipe:
    """`%image freeze`: the frozen recipe becomes the notebook's recipe (steps keyed by the
    cell, so `%image build` builds it and later cells add steps after it)."""
    if session is None:
        session = current()
    session.start(recipe.base, context=recipe.context, cell_id=cell_id,
                  execution_count=execution_count)
    for step in recipe.steps:
        step.key, step.origin = cell_id, execution_count
    session._recipe = recipe  # noqa: SLF001 - start() made a plain Recipe; keep the frozen one
    if line is not None:
        recipe.record["line"] = line.strip()
    return recipe


# ---- the installed distributions

def installed(path: Sequence[str | os.PathLike] | None = None) -> dict[str, md.Distribution]:
    """Installed distributions by canonical name; the first found on the path wins (as import)."""
    found: dict[str, md.Distribution] = {}
    search = [os.fspath(p) for p in path] if path is not None else None
    dists = md.distributions(path=search) if search is not None else md.distributions()
    for dist in dists:
        try:
            name = dist.metadata["Name"]
        except (KeyError, TypeError):
            name = None
        if not name or not dist.version:
            continue  # a damaged .dist-info (no METADATA): nothing to pin
        key = canonicalize_name(name)
        first = found.setdefault(key, dist)
        # A source checkout on the path (its .egg-info, cwd first on sys.path) shadows the
        # editable install's .dist-info of the same version, which holds the PEP 610 record.
        if first is not dist and first.version == dist.version and _direct_url(dist) \
                and not _direct_url(first):
            found[key] = dist
    return found


def _direct_url(dist: md.Distribution) -> str | None:
    try:
        return dist.read_text("direct_url.json")
    except OSError:
        return None


def _not_from_an_index(dist: md.Distribution) -> str | None:
    """Why this distribution cannot be installed again from an index (PEP 610), or None."""
    text = _direct_url(dist)
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return "installed from a direct URL (its direct_url.json is unreadable)"
    url = info.get("url", "")
    if "dir_info" in info:
        if (info.get("dir_info") or {}).get("editable"):
            return f"editable install of {_where(url)}: build a wheel and pin it, or install " \
                   "it in the image with a copy step"
        return f"installed from the local directory {_where(url)}: publish it, or copy it in"
    if "vcs_info" in info:
        vcs = info["vcs_info"]
        return f"installed from {vcs.get('vcs', 'version control')} ({url}" \
               f"@{vcs.get('commit_id', '?')}): the pip step installs wheels from an index only"
    if url.startswith("file:"):
        return f"installed from the local file {_where(url)}: publish it to an index, or copy " \
               "the wheel in and pass find_links="
    return f"installed from the URL {url}: the pip step installs wheels from an index only"


def _where(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def _top_level_names(dist: md.Distribution) -> set[str]:
    """The importable top-level names a distribution provides (top_level.txt, else RECORD)."""
    text = None
    try:
        text = dist.read_text("top_level.txt")
    except OSError:
        pass
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    names = set()
    for f in dist.files or []:
        parts = PurePosixPath(str(f)).parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(
                (".dist-info", ".egg-info", ".data", ".pth")):
            continue
        first = parts[0]
        if len(parts) == 1:
            if not first.endswith(".py"):
                continue
            first = first[:-3]
        names.add(first.split(".")[0])
    return names


def _imported_closure(dists: dict[str, md.Distribution]) -> dict[str, md.Distribution]:
    """The distributions providing modules in sys.modules, and what they require."""
    owners: dict[str, list[str]] = {}
    for key, dist in dists.items():
        for top in _top_level_names(dist):
            owners.setdefault(top, []).append(key)
    roots = {m.split(".", 1)[0] for m in list(sys.modules)}
    seeds = sorted({key for top in roots for key in owners.get(top, [])})
    return _closure(dists, seeds)


def _closure(dists: dict[str, md.Distribution], seeds: Iterable[str]
             ) -> dict[str, md.Distribution]:
    """`seeds` and every installed distribution they require (markers as in this kernel)."""
    env = default_environment()
    out: dict[str, md.Distribution] = {}
    todo: list[tuple[str, frozenset[str]]] = [(s, frozenset()) for s in seeds]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        key, extras = todo.pop()
        if (key, extras) in seen or key not in dists:
            continue
        seen.add((key, extras))
        dist = out.setdefault(key, dists[key])
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(
                    req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                continue
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return out


# ---- the notebook and files

def _notebook_path(notebook: str | os.PathLike | bool | None) -> Path | None:
    if notebook is False:
        return None
    if notebook is None or notebook is True:
        found = kernel_notebook()
        if found is None and notebook is True:
            raise BuildError("freeze could not find this kernel's notebook (Jupyter did not "
                             "tell it); pass notebook='NAME.ipynb'.")
        return found
    p = Path(notebook).expanduser()
    if not p.is_file():
        raise BuildError(f"the notebook {p} does not exist; give the path of the .ipynb file "
                         "(relative to the kernel's working directory).")
    return p.resolve()


def kernel_notebook() -> Path | None:
    """The running kernel's notebook file, when the frontend tells it (JupyterLab, VS Code)."""
    candidates = []
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    ns = getattr(shell, "user_ns", None) or {}
    candidates += [ns.get("__vsc_ipynb_file__"), ns.get("__session__")]
    candidates.append(os.environ.get("JPY_SESSION_NAME"))
    for c in candidates:
        if isinstance(c, str) and c.endswith(".ipynb") and os.path.isfile(c):
            return Path(c).resolve()
    return None


def _notebook_bytes(nb: Path) -> bytes:
    """The notebook as it goes into the image: without the build record nbimages writes into
    it afterwards (metadata.nbimages), so recording a build never changes the next build."""
    raw = nb.read_bytes()
    try:
        doc = json.loads(raw)
    except ValueError:
        raise BuildError(f"{nb} is not a notebook (not JSON); give the .ipynb file.") from None
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or "nbimages" not in meta:
        return raw
    del meta["nbimages"]
    return (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _inside(p: Path, context: Path, what: str) -> Path:
    """`p` (relative to the working directory) as a path relative to `context`."""
    full = Path(os.path.abspath(p.expanduser()))
    if not os.path.lexists(full):
        raise BuildError(f"the {what} {p} does not exist.")
    root = Path(os.path.abspath(context))
    try:
        return full.relative_to(root)
    except ValueError:
        raise BuildError(f"the {what} {p} is outside {root}, the notebook's folder that the "
                         "image's files are taken from; move it into that folder.") from None
