"""Dockerfiles both ways: read one into a Recipe (and build it embedded), write one from a Recipe.

Read: FROM, COPY, ADD (local files), ENV, ARG (`$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR:+x}`
substitution as Docker's shell lexer does: none inside single quotes), WORKDIR, USER, CMD and
ENTRYPOINT (exec and shell forms), LABEL, EXPOSE, RUN (kept as a step the engine builds),
line continuations, comments, and the `escape` parser directive (other directives ignored).
Every step's `origin` is its line number, and every error names the line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import BuildError, NbimagesError
from .recipe import Recipe

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_URL = re.compile(r"^(https?://|git@|git://|ssh://)", re.I)
_SUPPORTED = {"FROM", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "CMD", "ENTRYPOINT",
              "LABEL", "EXPOSE", "RUN"}
_KNOWN_UNSUPPORTED = {"VOLUME", "HEALTHCHECK", "SHELL", "STOPSIGNAL", "ONBUILD", "MAINTAINER"}


def _err(line: int, message: str) -> BuildError:
    return BuildError(f"Dockerfile line {line}: {message}")


# ---- lines

def _logical_lines(text: str) -> tuple[list[tuple[int, str]], str]:
    """(first line number, instruction text) pairs, continuations joined, comments dropped;
    and the escape character (the `escape` parser directive, default backslash)."""
    raw = text.splitlines()
    escape = "\\"
    i = 0
    # Parser directives: only at the very top, before any comment, blank line or instruction.
    while i < len(raw):
        m = _DIRECTIVE.match(raw[i].strip())
        if not m:
            break
        if m.group(1).lower() == "escape":
            if m.group(2) not in ("\\", "`"):
                raise _err(i + 1, f"escape directive {m.group(2)!r} must be \\ or `.")
            escape = m.group(2)
        i += 1
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for n in range(i, len(raw)):
        line = raw[n]
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped (Docker does too)
        if not current:
            start = n + 1
        body = line.rstrip()
        if body.endswith(escape):
            current.append(body[:-1])
            continue
        current.append(line)
        out.append((start, "".join(current).strip()))
        current = []
    if current:
        out.append((start, "".join(current).strip()))
    return [(n, t) for n, t in out if t], escape


# ---- words and substitution (Docker's shell lexer, the parts Dockerfiles use)

def _lex(text: str, env: dict[str, str], escape: str, *, line: int, split: bool = True,
         substitute: bool = True) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    have = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == escape and i + 1 < n:
            cur.append(text[i + 1])
            have = True
            i += 2
            continue
        if c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise _err(line, "unterminated single quote.")
            cur.append(text[i + 1:j])
            have = True
            i = j + 1
            continue
        if c == '"':
            i += 1
            have = True
            while i < n and text[i] != '"':
                if text[i] == escape and i + 1 < n and text[i + 1] in ('"', escape, "$"):
                    cur.append(text[i + 1])
                    i += 2
                elif text[i] == "$" and substitute:
                    value, i = _dollar(text, i, env, line)
                    cur.append(value)
                else:
                    cur.append(text[i])
                    i += 1
            if i >= n:
                raise _err(line, "unterminated double quote.")
            i += 1
            continue
        if c == "$" and substitute:
            value, i = _dollar(text, i, env, line)
            cur.append(value)
            have = have or bool(value)
            continue
        if c.isspace() and split:
            if have or cur:
                words.append("".join(cur))
            cur, have = [], False
            i += 1
            continue
        cur.append(c)
        have = True
        i += 1
    if have or cur:
        words.append("".join(cur))
    return words


def _dollar(text: str, i: int, env: dict[str, str], line: int) -> tuple[str, int]:
    """Expand the `$...` at text[i]; returns (value, index after it)."""
    n = len(text)
    if i + 1 < n and text[i + 1] == "{":
        j = text.find("}", i + 2)
        if j < 0:
            raise _err(line, "missing '}' in variable substitution.")
        inner = text[i + 2:j]
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])(.*))?$", inner, re.S)
        if not m:
            raise _err(line, f"bad substitution ${{{inner}}}.")
        name, op, word = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        if op == ":-":
            return (value if value else word), j + 1
        if op == ":+":
            return (word if value else ""), j + 1
        return value or "", j + 1
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1:])
    if not m:
        return "$", i + 1
    return env.get(m.group(0), ""), i + 1 + m.end()


def _json_form(args: str) -> list[str] | None:
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _flags(words: list[str], allowed: tuple[str, ...], instr: str, line: int
           ) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    rest = list(words)
    while rest and rest[0].startswith("--"):
        name, eq, value = rest.pop(0)[2:].partition("=")
        if name not in allowed:
            hint = {"from": "multi-stage builds need the engine",
                    "link": "--link is a BuildKit option", "checksum": "ADD --checksum is for URLs",
                    "parents": "--parents is a BuildKit option"}.get(name, "")
            raise _err(line, f"{instr} --{name} is not supported"
                             + (f" ({hint})" if hint else "")
                             + f"; the options here are: {', '.join('--' + a for a in allowed)}.")
        if not eq:
            raise _err(line, f"{instr} --{name} needs a value (--{name}=...).")
        flags[name] = value
    return flags, rest


def _pairs(words: list[str], instr: str, line: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for w in words:
        if "=" not in w or w.startswith("="):
            raise _err(line, f"{instr} expects KEY=VALUE pairs, got {w!r}.")
        k, v = w.split("=", 1)
        out[k] = v
    return out


# ---- reading

def parse_dockerfile(text: str, *, context: str | os.PathLike = ".",
                     build_args: dict[str, str] | None = None, platform: str | None = None
                     ) -> Recipe:
    """A Recipe equivalent to the Dockerfile `text` (RUN lines become engine-only steps)."""
    lines, escape = _logical_lines(text)
    build_args = dict(build_args or {})
    args: dict[str, str] = {}      # ARG values in scope
    global_args: dict[str, str] = {}  # ARGs before FROM: redeclare them (ARG NAME) to use them
    env: dict[str, str] = {}       # ENV set so far (also substituted)
    recipe: Recipe | None = None
    for line, body in lines:
        instr, _, rest = body.partition(" ")
        if "\t" in instr:
            instr, _, more = instr.partition("\t")
            rest = more + " " + rest
        upper = instr.upper()
        rest = rest.strip()
        scope = {**args, **env}

        def words(split: bool = True) -> list[str]:
            return _lex(rest, scope, escape, line=line, split=split)

        if upper not in _SUPPORTED:
            if upper in _KNOWN_UNSUPPORTED:
                raise _err(line, f"{upper} is not supported by the embedded builder; remove it "
                                 "or build with the engine.")
            raise _err(line, f"{instr!r} is not a Dockerfile instruction. The instructions are "
                             f"{', '.join(sorted(_SUPPORTED))}.")
        if upper == "ARG":
            if not rest:
                raise _err(line, "ARG needs a name.")
            for w in words():
                name, eq, default = w.partition("=")
                if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                    raise _err(line, f"ARG name {name!r} is not valid.")
                if name in build_args:
                    args[name] = build_args[name]
                elif eq:
                    args[name] = default
                elif name in global_args:
                    args[name] = global_args[name]
                if recipe is not None:
                    recipe.arg(name, args.get(name))
                    _mark(recipe, line)
            continue
        if upper == "FROM":
            if recipe is not None:
                raise _err(line, "a second FROM starts a multi-stage build, which needs the "
                                 "engine; the embedded builder builds one stage.")
            flags, ws = _flags(words(), ("platform",), "FROM", line)
            if len(ws) == 3 and ws[1].lower() == "as":
                ws = ws[:1]
            if len(ws) != 1:
                raise _err(line, "FROM takes one image (optionally AS name).")
            recipe = Recipe(ws[0], context=context, platform=flags.get("platform") or platform)
            global_args, args = args, {}
            continue
        if recipe is None:
            raise _err(line, f"{upper} before FROM; a Dockerfile starts with FROM (after "
                             "optional ARGs).")
        try:
            _instruction(recipe, upper, rest, words, env, scope, line)
        except NbimagesError as e:
            if str(e).startswith("Dockerfile line"):
                raise
            raise _err(line, str(e)) from None
        _mark(recipe, line)
    if recipe is None:
        raise BuildError("the Dockerfile has no FROM line; start it with FROM IMAGE (or FROM "
                         "scratch).")
    return recipe


def _mark(recipe: Recipe, line: int) -> None:
    if recipe.steps and recipe.steps[-1].origin is None:
        recipe.steps[-1].origin = f"line {line}"


def _instruction(recipe: Recipe, upper: str, rest: str, words, env: dict, scope: dict,
                 line: int) -> None:
    if upper in ("COPY", "ADD"):
        form = _json_form(rest)
        ws = [_lex(w, scope, "\\", line=line, split=False)[0] if w else w for w in form] \
            if form is not None else words()
        allowed = ("chown", "chmod")
        flags, ws = _flags(ws, allowed, upper, line)
        if len(ws) < 2:
            raise _err(line, f"{upper} needs a source and a destination.")
        srcs, dest = ws[:-1], ws[-1]
        if upper == "ADD":
            for s in srcs:
                if _URL.match(s):
                    raise _err(line, f"ADD {s} downloads from the network, which the embedded "
                                     "builder does not do; download the file into the build "
                                     "context and COPY it.")
        recipe.copy(srcs, dest, chown=flags.get("chown"), chmod=flags.get("chmod"))
        if upper == "ADD":
            recipe.steps[-1].args["add"] = True
    elif upper == "ENV":
        ws = words()
        if not ws:
            raise _err(line, "ENV needs NAME=value.")
        if "=" not in ws[0]:
            # Legacy form: ENV NAME value with spaces
            name, _, value = rest.partition(" ")
            if not value.strip():
                raise _err(line, f"ENV {name} has no value; write ENV {name}=VALUE "
                                 f"(ENV {name}= for an empty one).")
            value = " ".join(_lex(value.strip(), scope, "\\", line=line))
            pairs = {name: value}
        else:
            pairs = _pairs(ws, "ENV", line)
        recipe.env(pairs)
        env.update(pairs)
    elif upper == "LABEL":
        recipe.label(_pairs(words(), "LABEL", line))
    elif upper == "WORKDIR":
        ws = words(split=False)
        if not ws or not ws[0]:
            raise _err(line, "WORKDIR needs a path.")
        recipe.workdir(ws[0])
    elif upper == "USER":
        ws = words()
        if len(ws) != 1:
            raise _err(line, "USER takes one user (name or uid[:gid]).")
        recipe.user(ws[0])
    elif upper in ("CMD", "ENTRYPOINT"):
        form = _json_form(rest)
        if form is None and rest.startswith("["):
            raise _err(line, f"{upper} {rest} looks like the exec form but is not a JSON list "
                             "of strings; use double quotes: [\"python\", \"app.py\"].")
        cmd = form if form is not None else rest
        if not cmd and cmd != []:
            raise _err(line, f"{upper} needs a command.")
        getattr(recipe, upper.lower())(cmd)
    elif upper == "EXPOSE":
        ws = words()
        if not ws:
            raise _err(line, "EXPOSE needs a port.")
        recipe.expose(*ws)
    elif upper == "RUN":
        form = _json_form(rest)
        if not rest:
            raise _err(line, "RUN needs a command.")
        recipe.run(form if form is not None else rest)


def read_dockerfile(path_or_text: str | os.PathLike) -> tuple[str, Path | None]:
    """The Dockerfile text and its path (None when `path_or_text` is the text itself)."""
    if isinstance(path_or_text, os.PathLike):
        path = Path(path_or_text)
    elif "\n" in path_or_text or re.match(r"^\s*(FROM|ARG|#)", path_or_text, re.I):
        return path_or_text, None
    else:
        path = Path(path_or_text)
    try:
        return path.read_text(encoding="utf-8"), path
    except FileNotFoundError:
        raise BuildError(f"no Dockerfile at {str(path)!r}; give its path (or the text "
                         "itself).") from None
    except IsADirectoryError:
        raise BuildError(f"{str(path)!r} is a directory; give the Dockerfile inside it, e.g. "
                         f"{path / 'Dockerfile'}.") from None


def build_dockerfile(path_or_text: str | os.PathLike, tag: str | None = None,
                     context: str | os.PathLike = ".", *, build_args: dict | None = None,
                     platform: str | None = None, store: Any = None,
                     compression: str | None = None, engine: Any = None, progress: Any = None):
    """Build a Dockerfile (path or text) embedded; returns the stored nbimages.Image."""
    text, _ = read_dockerfile(path_or_text)
    recipe = parse_dockerfile(text, context=context, build_args=build_args, platform=platform)
    if engine in (None, "embedded"):
        for step in recipe.steps:
            if step.kind == "run":
                raise BuildError(f"Dockerfile {step.origin}: RUN runs a command in a container, "
                                 "which the embedded builder cannot do (it has no engine). Build "
                                 "this Dockerfile with the Docker engine (engine='docker'; "
                                 "`nbimages build --engine docker` in a shell), or replace "
                                 "the RUN by COPY/ENV steps.")
    return build_naming_lines(recipe, lambda: recipe.build(
        tag, engine=engine, store=store, compression=compression, progress=progress))


def build_naming_lines(recipe: Recipe, build: Any, lines: list | None = None):
    """Run `build()`; a step's BuildError (a COPY source missing, outside the context...)
    names its Dockerfile line. `lines`: each step's line, when the origins now say else."""
    lines = lines if lines is not None else [s.origin for s in recipe.steps]
    try:
        return build()
    except BuildError as e:
        done = len(recipe.report) if getattr(recipe, "report", None) is not None else None
        if done is None or done >= len(lines) or not str(lines[done] or "").startswith("line "):
            raise
        raise BuildError(f"Dockerfile {lines[done]}: {e}") from None


# ---- writing
