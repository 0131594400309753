"""Build the image a notebook's `%image` / `%%image` cells describe, without running the rest.

    image = build_notebook("analysis.ipynb", "handout:1")     # `nbimages build analysis.ipynb`

The cells are read from the notebook's JSON (nbformat converts v1-v3 files) and turned into
Python by IPython's own input transformer (so `x = %image build t`, indented magics and
cell-magic bodies read exactly as a kernel reads them); each `%image` call is parsed by the
magics' own argument parsers and applied to a fresh build session (nbimages.workflow.session),
top to bottom, as "Run All" would in a new kernel. The notebook's folder is the working
directory, as it is for its kernel. Subcommands that look at or move images (`layers`, `run`,
`push`, ...) do not describe the image and are skipped; `%image freeze` is replayed from the
record it left in its saved output (the pins come from the kernel that ran it). After a
build, the record (digest, image ID, pins, diff_ids per step) goes into a lock file beside the
notebook (`analysis.nbimages.lock`, to commit with it: an editor that has the notebook open
saves over its metadata, never over this file) and into the notebook's metadata
(`metadata.nbimages`), unless record=False. `find_record` reads either and says which.
"""

from __future__ import annotations

import ast
import contextlib
import json
import io
import os
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..atomic import write_atomic
from ..builder.embedded import BASE_DIGEST_ANNOTATION, PIP_LABEL
from ..commands.parsing import (CELL_MAGIC, MAGIC, Invocation, UsageError, pairs, prepare,
                                rest_after, split_line)
from ..commands.steps import STEPS
from ..errors import BuildError, NbimagesError
from ..oci.compressor import COMPRESSOR_ANNOTATION
from ..oci.descriptor import Descriptor
from ..store import default_store
from ..verbs import provided
from . import session as sessions
from .freeze import FREEZE_MIME, frozen_recipe, use_in_session

__all__ = ["build_notebook", "NotebookError", "NotebookBuild", "read_notebook", "image_calls",
           "replay", "record_build", "build_record", "find_record", "lock_path", "Record",
           "METADATA_KEY"]

METADATA_KEY = "nbimages"
LOCK_SUFFIX = ".nbimages.lock"


class NotebookError(BuildError):
    """A notebook that cannot be read or whose `%image` cells cannot be followed."""


@dataclass
class ImageCall:
    """One `%image` line or `%%image` cell of a notebook."""

    cell: int                  # 1-based position of the cell in the notebook
    cell_id: str
    line: str                  # the text after `%image`
    body: str | None           # the cell body of a `%%image` cell
    first_line: str            # the cell's first line, to name it in messages
    outputs: list = field(default_factory=list, repr=False)
    execution_count: int | None = None   # the `In [n]` saved with the cell, if it ran

    @property
    def origin(self) -> int | str:
        """The origin its steps get, in the kernel's vocabulary: the execution count the
        notebook shows as `In [n]`, or `cell k` (its position) for a cell that never ran."""
        return self.execution_count if self.execution_count is not None else f"cell {self.cell}"

    def where(self) -> str:
        count = "" if self.execution_count is None else f", In [{self.execution_count}]"
        return f"cell {self.cell}{count} ({self.first_line!r})"


@dataclass
class NotebookBuild:
    """What replaying a notebook made: the final image, its recipe, what was skipped."""

    path: Path
    image: Any = None
    recipe: Any = None
    images: list = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    calls: list[ImageCall] = field(default_factory=list)


# ---- reading

def read_notebook(path: str | os.PathLike):
    """The notebook at `path` as an nbformat v4 node; NotebookError if it is not one."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotebookError(f"the notebook {p} does not exist; give the path of an .ipynb "
                            "file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NotebookError(f"cannot read the notebook {p} ({e}).") from None
    try:
        nb = _reads(text)
    except Exception as e:  # noqa: BLE001 - nbformat raises several kinds for bad files
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise NotebookError(f"{p} is not a Jupyter notebook: {reason}. Open it in Jupyter and "
                            "save it again, or check the file.") from None
    cells = nb.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise NotebookError(f"{p} is not a Jupyter notebook: it has no list of cells.")
    return nb


def _reads(text: str) -> dict:
    """A v4 notebook as JSON; older formats converted by nbformat (its import takes seconds,
    mostly jsonschema, so the common case does without it)."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("the file holds JSON, but not a notebook object")
    version = doc.get("nbformat")
    if version == 4:
        return doc
    if version in (1, 2, 3):
        try:
            import nbformat
        except ImportError:
            raise ValueError(f"it is an nbformat {version} notebook; install nbformat to read "
                             "it, or save it again in Jupyter") from None
        return nbformat.reads(text, as_version=4, capture_validation_error={})
    raise ValueError(f"unknown notebook format {version!r} (the 'nbformat' field)")


def notebook_text(value: Any) -> str:
    """One of a notebook's multi-line strings (a cell's source, a stream's text, an output's
    data) as one str: the file holds it as a list of lines or as a string."""
    return "".join(value) if isinstance(value, list) else str(value or "")


def cell_source(cell: dict) -> str:
    """A cell's source as one str."""
    return notebook_text(cell.get("source"))


# IPython's escapes, read the way IPython.core.inputtransformer2 reads them (without importing
# IPython: the core works where it is absent): `%name args` and `x = %name args` at the start
# of a logical line, `!cmd` / `x = !cmd` shell escapes, and `%%name` on a cell's first line.
_LINE_MAGIC = re.compile(r"^(?P<indent>[ \t]*)(?P<lhs>)%(?!%)(?P<rest>.*)$", re.S)
_ASSIGN_MAGIC = re.compile(r"^(?P<indent>[ \t]*)(?P<lhs>[\w.\[\](), *'\"]+?\s*=[ \t]*)%(?=\w)(?P<rest>.*)$",
                           re.S)
_SHELL = re.compile(r"^(?P<indent>[ \t]*)(?:[\w.\[\](), *]+?\s*=[ \t]*)?!")


def _statement_complete(text: str) -> bool:
    """False while `text` ends inside brackets or a multi-line string (Python's tokenizer)."""
    try:
        for _ in tokenize.generate_tokens(io.StringIO(text).readline):
            pass
    except tokenize.TokenError:
        return False
    except SyntaxError:
        return True  # not our business: ast.parse reports it
    return True


def transform_cell(source: str) -> str:
    """A cell's source as the Python a kernel runs: IPython's magic and shell escapes become
    `get_ipython().run_line_magic(name, args)` / `run_cell_magic(name, line, body)` calls."""
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    while lines and lines[0].isspace():
        lines.pop(0)
    if lines and lines[0].startswith("%%") and not re.match(r"%%\w+\?", lines[0]):
        name, _, first = lines[0][2:].rstrip().partition(" ")
        return "get_ipython().run_cell_magic(%r, %r, %r)\n" % (name, first, "".join(lines[1:]))
    out: list[str] = []
    statement: list[str] = []
    i = 0
    while i < len(lines):
        if not statement:  # at the start of a logical line: an escape may begin here
            end = i
            while lines[end].endswith("\\\n") and end + 1 < len(lines):
                end += 1
            joined = " ".join([p.rstrip()[:-1] for p in lines[i:end]] + [lines[end].rstrip()])
            m = _ASSIGN_MAGIC.match(joined) or _LINE_MAGIC.match(joined)
            if m:
                name, _, args = m["rest"].partition(" ")
                out.append(f"{m['indent']}{m['lhs']}get_ipython().run_line_magic({name!r}, {args!r})\n")
                i = end + 1
                continue
            m = _SHELL.match(joined)
            if m:
                out.append(f"{m['indent']}get_ipython().system('')\n")
                i = end + 1
                continue
        statement.append(lines[i])
        out.append(lines[i])
        if _statement_complete("".join(statement)):
            statement = []
        i += 1
    return "".join(out)


def image_calls(nb, path: str | os.PathLike = "notebook") -> list[ImageCall]:
    """Every `%image` / `%%image` call in the code cells, in the order a kernel runs them."""
    calls: list[ImageCall] = []
    for index, cell in enumerate(nb["cells"], start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell_source(cell)
        if "%image" not in source:
            continue
        first = next((l.strip() for l in source.splitlines() if l.strip()), "")[:80]
        cell_id = str(cell.get("id") or f"cell-{index}")
        try:
            code = transform_cell(source)
            tree = ast.parse(code)
        except (SyntaxError, ValueError) as e:
            raise NotebookError(f"{path}: cell {index} ({first!r}) has %image lines but is not "
                                f"valid Python around them ({e.__class__.__name__}: {e}); fix "
                                "the cell so a kernel could run it.") from None
        found = []
        for node in ast.walk(tree):
            magic = _magic_call(node)
            if magic is not None:
                found.append((node.lineno, node.col_offset, magic))
        for _, _, (line, body) in sorted(found, key=lambda t: t[:2]):
            count = cell.get("execution_count")
            calls.append(ImageCall(index, cell_id, line, body, first,
                                   list(cell.get("outputs") or []),
                                   count if isinstance(count, int) else None))
    return calls


def _magic_call(node: ast.AST) -> tuple[str, str | None] | None:
    """(line, body) of `get_ipython().run_line_magic('image', line)` / `run_cell_magic(...)`."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    kind = node.func.attr
    if kind not in ("run_line_magic", "run_cell_magic"):
        return None
    target = node.func.value
    if not (isinstance(target, ast.Call) and isinstance(target.func, ast.Name)
            and target.func.id == "get_ipython"):
        return None
    args = node.args
    if not args or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
        return None
    if args[0].value != "image":
        return None
    if kind == "run_line_magic" and len(args) == 2:
        return args[1].value, None
    if kind == "run_cell_magic" and len(args) == 3:
        return args[1].value, args[2].value
    return None


# ---- replaying

@contextlib.contextmanager
def _fresh_session() -> Iterator[Any]:
    """A new build session as the process's current one (the magics' functions use it)."""
    saved = sessions._current  # noqa: SLF001 - swapped back below
    sessions._current = sessions.Session()
    try:
        yield sessions._current
    finally:
        sessions._current = saved


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """The notebook's folder as the working directory (its kernel's), for relative paths."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def replay(path: str | os.PathLike, *, tag: str | None = None, store: Any = None,
           progress: Callable[[dict], Any] | None = None, compression: str | None = None
           ) -> NotebookBuild:
    """Apply the notebook's `%image` calls to a fresh session and build what they describe.

    Builds where the notebook builds (`%image build`, `%%image dockerfile`), and once more at
    the end when steps follow the last build (or nothing was built), tagged `tag`; the last
    image is also tagged `tag` when given.
    """
    p = Path(path).expanduser().resolve()
    nb = read_notebook(p)
    calls = image_calls(nb, p.name)
    result = NotebookBuild(p, calls=calls)
    if not calls:
        raise NotebookError(f"{p.name} has no %image or %%image cells, so it describes no "
                            "image: add cells such as `%image from python:3.12-slim` and "
                            "`%%image file /app/main.py`, or freeze the kernel with "
                            "`%image freeze`.")
    build_kw: dict[str, Any] = {"progress": progress}
    if store is not None:
        build_kw["store"] = store
    if compression is not None:
        build_kw["compression"] = compression
    with _fresh_session() as session, _working_directory(p.parent):
        dirty = False
        for call in calls:
            try:
                made = _apply(call, session, result, build_kw, p)
            except UsageError as e:
                raise NotebookError(f"{p.name}: {call.where()}: {e}") from None
            except NotebookError:
                raise
            except NbimagesError as e:
                raise _named(e, p, calls, session, call) from None
            if made == "built":
                dirty = False
            elif made == "step":
                dirty = True
        if not session.started:
            raise NotebookError(f"{p.name}: its %image cells start no recipe (no `%image from`, "
                                "`%%image dockerfile` or `%image freeze`), so there is nothing "
                                "to build.")
        if dirty or result.image is None:
            try:
                result.image = session.build(tag, **build_kw)
            except NotebookError:
                raise
            except NbimagesError as e:
                raise _named(e, p, calls, session, None) from None
            result.images.append(result.image)
            if tag:
                result.image.names.insert(0, tag)
        elif tag:
            _tag(result.image, tag, store)
        result.recipe = session.recipe
    result.image.recipe = result.recipe
    return result


def _named(err: NbimagesError, path: Path, calls: list[ImageCall], session: Any,
           call: ImageCall | None) -> NotebookError:
    """The error, naming the cell of the step that failed (a build stops at a step)."""
    recipe = session.recipe if session.started else None
    report = getattr(recipe, "report", None)
    building = call is None or call.line.split(None, 1)[:1] in (["build"], ["dockerfile"])
    if building and recipe is not None and recipe._base_image is None \
            and recipe.base.lower() != "scratch":
        # The base is opened when the build starts: the `from` cell names it.
        start = next((c for c in calls if c.cell_id == session._from_cell), None)
        if start is not None:
            return NotebookError(f"{path.name}: {start.where()}: {err}")
    if building and recipe is not None and report is not None and len(report) < len(recipe.steps):
        cell = recipe.steps[len(report)].origin
        failed = next((c for c in calls if c.origin == cell), None)
        if failed is not None:
            by = f" (building for {call.where()})" if call is not None and call is not failed \
                else ""
            return NotebookError(f"{path.name}: {failed.where()}{by}: {err}")
    if call is None:
        return NotebookError(f"{path.name}: building its recipe: {err}")
    return NotebookError(f"{path.name}: {call.where()}: {err}")


def _tag(image: Any, tag: str, store: Any) -> None:
    s = store or default_store()
    if image.index is not None:  # a multi-platform image: the tag names its index
        s.tag(tag, Descriptor(image.index.media_type, image.index.digest, len(image.index.raw)))
    else:
        s.tag(tag, Descriptor(image.manifest.media_type, image.digest, len(image.manifest.raw),
                              platform=image.platform))
    if tag not in image.names:
        image.names.insert(0, tag)


def _apply(call: ImageCall, session: Any, result: NotebookBuild, build_kw: dict,
           path: Path) -> str:
    """Run one call as the magic would (the same parser, commands.parsing.prepare); returns
    "step", "built" or "skipped". Only the build steps (commands.steps) describe the image."""
    prog = CELL_MAGIC if call.body is not None else MAGIC
    words = split_line(call.line, prog)
    if not words or words[0] in ("-h", "--help", "help") or "-h" in words or "--help" in words:
        result.skipped.append(f"{call.where()}: help")
        return "skipped"
    if words[0] == "freeze":
        return _replay_freeze(call, session, path, rest_after(call.line, words[0]))
    if not words[0].startswith("-") and words[0] not in STEPS.commands:
        provided("command_table")().lookup(words[0], prog)  # an unknown subcommand is an error
        result.skipped.append(f"{call.where()}: {prog} {words[0]} does not describe the image")
        return "skipped"
    parsed = prepare(STEPS, call.line, call.body)
    cmd, ns = parsed.command, parsed.args
    if cmd is None:  # --help on a body line of `%%image pip|env|label` (its lines are arguments)
        return "skipped"
    inv = Invocation(ns, call.body, None, call.cell_id, call.origin, parsed.raw, {},
                     show=lambda value: None)
    cell_kw = {"cell_id": call.cell_id, "execution_count": call.origin}
    if cmd.name == "build":
        kw = dict(build_kw)
        kw.update({k: v for k, v in (("engine", ns.engine), ("compression", ns.compression)) if v})
        image = session.build(ns.tag, **kw)
    elif cmd.name == "dockerfile":
        kw = dict(build_kw)
        if ns.engine:
            kw["engine"] = ns.engine
        image = session.dockerfile(call.body or "", ns.tag, context=ns.context,
                                   build_args=pairs(ns.build_args, "dockerfile --build-arg")
                                   or None, **cell_kw, **kw)
    elif cmd.name == "recipe" and not ns.reset:
        return "skipped"  # it only shows the recipe; --reset changes it, as a step does
    else:
        cmd.func(inv)  # type: ignore[misc]
        return "step"
    if ns.tag and ns.tag not in image.names:
        image.names.insert(0, ns.tag)  # the builder's stored image does not carry its tag
    result.image = image
    result.images.append(image)
    return "built"


def _replay_freeze(call: ImageCall, session: Any, path: Path, line: str) -> str:
    """`%image freeze`: its pins come from the kernel that ran it, saved in the cell output."""
    record = None
    for out in call.outputs:
        data = out.get("data") if isinstance(out, dict) else None
        if isinstance(data, dict) and FREEZE_MIME in data:
            record = data[FREEZE_MIME]
            if isinstance(record, str):
                record = json.loads(record)
    if not isinstance(record, dict) or "base" not in record:
        raise NotebookError(f"{path.name}: {call.where()}: `%image freeze` reads the packages of "
                            "the kernel that runs it, and this cell has no saved output to read "
                            "them from: run the cell in the notebook, save the notebook, then "
                            "build it again.")
    if record.get("line") is not None and record["line"] != line.strip():
        raise NotebookError(f"{path.name}: {call.where()}: the cell was edited after it ran "
                            f"(it ran `%image freeze {record['line']}`): run it again and save "
                            "the notebook.")
    use_in_session(frozen_recipe(record, path.parent), session, line=record.get("line"),
                   cell_id=call.cell_id, execution_count=call.origin)
    return "step"


# ---- building and recording

def build_notebook(path: str | os.PathLike, tag: str | None = None, *, store: Any = None,
                   record: bool = True, progress: Callable[[dict], Any] | None = None,
                   compression: str | None = None):
    """Build the image a notebook's `%image` cells describe (its other cells do not run).

    Returns the stored Image (with `.build_report` and `.recipe`); with `record=True` the
    build is written into the notebook's metadata (`metadata.nbimages`).
    """
    result = replay(path, tag=tag, store=store, progress=progress, compression=compression)
    image = result.image
    image.notebook_build = result
    if record:
        record_build(result.path, image, tag=tag)
    return image


def build_record(image: Any, tag: str | None = None) -> dict[str, Any]:
    """What goes into `metadata.nbimages`: digest, image ID, pins, layers per step."""
    report = list(image.build_report or [])
    recipe = image.recipe
    pins = []
    with contextlib.suppress(ValueError, TypeError):
        pins = json.loads(image.labels.get(PIP_LABEL) or "[]")
    annotations = image.manifest.annotations
    layer_rows = [r for r in report if r.get("diff_id")]
    media = {l.digest: l.media_type for l in image.layers}
    steps = []
    for r in report:
        step = {"step": r["step"], "cell": r.get("origin"), "cell_id": r.get("key"),
                "kind": r.get("kind"), "instruction": r["instruction"]}
        if r.get("diff_id"):
            step.update(diff_id=r["diff_id"], layer=r["layer"], size=r["size"],
                        media_type=media.get(r["layer"]))
        steps.append(step)
    names = [n for n in image.names if ":" in n.rsplit("/", 1)[-1]]
    extra = {}
    if image.index is not None:  # a multi-platform image is named by its index
        extra["platforms"] = {str(i.platform): i.digest for i in image.index.images}
        with contextlib.suppress(ValueError, TypeError):  # each platform's own wheels
            extra["platform_pins"] = {str(i.platform): json.loads(i.labels.get(PIP_LABEL) or "[]")
                                      for i in image.index.images}
    return {
        "version": 1,
        "tag": tag or (names[0] if names else None),
        "digest": (image.index or image).digest,
        **extra,
        "image_id": image.id,
        "base": getattr(recipe, "base", None),
        "base_digest": (annotations or {}).get(BASE_DIGEST_ANNOTATION),
        "compressor": (annotations or {}).get(COMPRESSOR_ANNOTATION),
        "base_layers": len(image.diff_ids) - len(layer_rows),
        "diff_ids": image.diff_ids,
        "pins": pins,
        "steps": steps,
    }


def lock_path(notebook: str | os.PathLike) -> Path:
    """The lock file beside a notebook: `analysis.ipynb` -> `analysis.nbimages.lock`."""
    p = Path(notebook)
    return p.with_name(p.stem + LOCK_SUFFIX)


def record_build(path: str | os.PathLike, image: Any, tag: str | None = None) -> dict[str, Any]:
    """Write the build record into the lock file beside the notebook and into the notebook's
    metadata (each atomically; the notebook's other keys kept)."""
    p = Path(path)
    rec = build_record(image, tag)
    lock = {"about": "nbimages build record of " + p.name + "; commit it with the notebook. "
                     "`nbimages verify " + p.name + "` rebuilds and compares.", **rec}
    try:
        write_atomic(lock_path(p), (json.dumps(lock, indent=1, sort_keys=True) + "\n")
                     .encode("utf-8"))
    except OSError as e:
        raise NotebookError(f"cannot write the build record {lock_path(p)} ({e}); check that "
                            "the notebook's folder is writable.") from None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NotebookError(f"cannot record the build in {p} ({e}).") from None
    meta = doc.setdefault("metadata", {})
    if meta.get(METADATA_KEY) == rec:
        return rec
    meta[METADATA_KEY] = rec
    # nbformat's own layout (sorted keys, indent 1), so Jupyter's next save changes nothing else.
    text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    write_atomic(p, text.encode("utf-8"), mode=p.stat().st_mode & 0o7777)
    return rec


def notebook_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The build record in a notebook's metadata, if any."""
    return record_in(read_notebook(path))


def record_in(nb: dict) -> dict[str, Any] | None:
    """The build record in the metadata of a notebook already read (read_notebook), if any."""
    rec = (nb.get("metadata") or {}).get(METADATA_KEY)
    return dict(rec) if isinstance(rec, dict) else None


@dataclass
class Record:
    """A notebook's build record, where it was read (`source`), and why there is none."""

    record: dict[str, Any] | None
    source: str | None       # "analysis.nbimages.lock" or "metadata.nbimages of analysis.ipynb"
    why_none: str = ""
    notes: list[str] = field(default_factory=list)


def find_record(path: str | os.PathLike) -> Record:
    """The build record of a notebook: its lock file first (editors do not touch it), then its
    metadata; with no record, `why_none` says what was looked at and what to do."""
    p = Path(path)
    lock = lock_path(p)
    meta = notebook_record(p)
    from_lock, problem = None, ""
    if lock.exists():
        try:
            from_lock = json.loads(lock.read_text(encoding="utf-8"))
            if not isinstance(from_lock, dict) or "digest" not in from_lock:
                raise ValueError("no digest in it")
            from_lock.pop("about", None)
        except (OSError, ValueError) as e:
            from_lock, problem = None, f"{lock.name} is not a build record ({e})"
    notes = []
    if from_lock is not None:
        if meta is not None and meta.get("digest") != from_lock.get("digest"):
            notes.append(f"metadata.nbimages of {p.name} records another build "
                         f"({meta.get('digest')}); the lock file is the one editors leave alone")
        return Record(from_lock, lock.name, notes=notes)
    if meta is not None:
        if problem:
            notes.append(problem)
        return Record(meta, f"metadata.nbimages of {p.name}", notes=notes)
    lock_state = problem or f"there is no {lock.name} beside it"
    return Record(None, None, why_none=(
        f"{p.name} has no recorded build: {lock_state}, and its metadata has no nbimages "
        f"entry (an editor that had the notebook open may have saved over it). Run "
        f"`nbimages build {p.name}` to record one, or give the digest."))
