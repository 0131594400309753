"""Recipe steps: one small record per instruction, with a kind, a JSON definition and an origin.

A step's `kind` decides who can build it: the embedded builder makes layers for `file`,
`copy`, `pip`, `apt`, `apk` and `remove` and config changes for the rest; `run` needs a container engine
(an engine builder takes the same recipe and handles every kind). `key` identifies the step
for replacement (a notebook cell id); `origin` says where it came from (execution count,
Dockerfile line) and is shown in the build report but never affects the image.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..errors import BuildError

LAYER_KINDS = ("file", "copy", "pip", "apt", "apk", "remove", "run")
CONFIG_KINDS = ("env", "workdir", "user", "cmd", "entrypoint", "label", "expose", "arg")
KINDS = LAYER_KINDS + CONFIG_KINDS
EMBEDDED_KINDS = frozenset(KINDS) - {"run"}


@dataclass
class Step:
    """One instruction. `args` is its JSON-able definition; `content` holds a file step's bytes."""

    kind: str
    args: dict[str, Any]
    content: bytes | None = field(default=None, repr=False)
    key: str | None = None
    origin: Any = None

    @property
    def makes_layer(self) -> bool:
        return self.kind in LAYER_KINDS

    @property
    def content_digest(self) -> str | None:
        if self.content is None:
            return None
        return "sha256:" + hashlib.sha256(self.content).hexdigest()

    def definition(self) -> dict[str, Any]:
        """What the step means, for cache keys: its args plus a digest of its content."""
        d = {"kind": self.kind, **self.args}
        if self.content is not None:
            d["content"] = self.content_digest
        return d

    def describe(self) -> str:
        """One line, Dockerfile-like, stable: the history `created_by` and the report's step text."""
        a = self.args
        if self.kind == "file":
            return (f"COPY --chmod={a['mode']:o}{chown_flag(a)} <cell> {a['path']} "
                    f"# {self.content_digest}")
        if self.kind == "copy":
            return f"COPY{copy_flags(a)} {' '.join(_q(s) for s in a['src'])} {_q(a['dest'])}"
        if self.kind == "pip":
            opts = f" --index-url {_q(a['index_url'])}" if a.get("index_url") else ""
            opts += "".join(f" --find-links {_q(f)}" for f in a.get("find_links") or [])
            return "PIP" + opts + " " + " ".join(_q(r) for r in a["requirements"])
        if self.kind == "apt":
            return "APT" + apt_options(a) + " " + " ".join(a["packages"])
        if self.kind == "apk":
            return "APK" + apt_options(a) + " " + " ".join(a["packages"])
        if self.kind == "remove":
            return "REMOVE " + " ".join(_q(p) for p in a["paths"])
        if self.kind == "run":
            return "RUN " + (json.dumps(a["command"]) if isinstance(a["command"], list)
                             else a["command"])
        if self.kind == "env":
            return "ENV " + " ".join(f"{k}={_q(v)}" for k, v in a["vars"].items())
        if self.kind == "label":
            return "LABEL " + " ".join(f"{_q(k)}={_q(v)}" for k, v in a["labels"].items())
        if self.kind == "workdir":
            return f"WORKDIR {a['path']}"
        if self.kind == "user":
            return f"USER {a['user']}"
        if self.kind in ("cmd", "entrypoint"):
            return f"{self.kind.upper()} {json.dumps(a['command'], ensure_ascii=False)}"
        if self.kind == "expose":
            return "EXPOSE " + " ".join(a["ports"])
        if self.kind == "arg":
            return f"ARG {a['name']}" + (f"={_q(a['default'])}" if a.get("default") is not None
                                         else "")
        return self.kind.upper()

    @property
    def cell(self) -> str:
        """Where the step was written, as people name it: `In [n]` for a notebook cell (the
        number the notebook shows), `line n` for a Dockerfile, '' when unknown."""
        return cell_name(self.origin)

    def __repr__(self) -> str:
        where = f" from {self.cell}" if self.cell else ""
        return f"<Step {self.describe()}{where}>"


def cell_name(origin: Any) -> str:
    """A step's origin as people name it: `In [n]` for a notebook cell's execution count, the
    text as is otherwise (`line 3` of a Dockerfile), '' when unknown."""
    if isinstance(origin, int) and not isinstance(origin, bool):
        return f"In [{origin}]"
    return "" if origin is None else str(origin)


def _q(text: str) -> str:
    return shlex.quote(str(text)) if text == "" or any(c in str(text) for c in " \t\n\"'$\\") \
        else str(text)


def chown_flag(a: dict) -> str:
    """` --chown=UID:GID` for a file/copy step with an owner, else ''."""
    if a.get("uid") or a.get("gid"):
        return f" --chown={a.get('uid', 0)}:{a.get('gid', 0)}"
    return ""


def apt_options(a: dict) -> str:
    """` --mirror URL --snapshot TS --suite S --keyring F` of an apt step (` --mirror URL
    --repository URL --key F` of an apk step) that sets them, else ''."""
    out = ""
    for k in ("mirror", "snapshot", "suite", "repository", "keyring", "key"):
        for v in [a[k]] if isinstance(a.get(k), str) else a.get(k) or []:
            # a mirror's user:password never goes into the image's history
            out += f" --{k} {_q(re.sub(r'//[^/@]*@', '//***@', v))}"
    return out


def copy_flags(a: dict) -> str:
    """` --chown=UID:GID` and ` --chmod=MODE` for a copy step that sets them, else ''."""
    flags = chown_flag(a)
    if a.get("chmod") is not None:
        flags += f" --chmod={a['chmod']:o}"
    return flags


# ---- constructors: validate arguments once, so a bad step fails when it is added

def check_options(kind: str, given: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) or "none"
        raise BuildError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)} for a {kind} step; its options are: {valid}.")


def image_path(path: Any, what: str, *, relative_ok: bool = False) -> str:
    if not isinstance(path, str) or not path.strip():
        raise BuildError(f"{what} must be a path inside the image such as /app/main.py, "
                         f"not {path!r}.")
    if "\0" in path or "\n" in path:
        raise BuildError(f"{what} {path!r} contains a NUL or newline character.")
    if not relative_ok and not path.startswith("/"):
        raise BuildError(f"{what} {path!r} must be absolute (start with /).")
    return path


def parse_mode(mode: Any, what: str = "mode") -> int:
    if isinstance(mode, str):
        try:
            mode = int(mode, 8)
        except ValueError:
            raise BuildError(f"{what} {mode!r} is not an octal permission such as 644 or "
                             "755.") from None
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise BuildError(f"{what} {mode!r} is not a permission mode: give an int such as 0o644 "
                         "or an octal string such as '755'.")
    return mode


def parse_owner(owner: Any) -> tuple[int, int]:
    """`uid`, `uid:gid` or (uid, gid), numeric: names would need the image's /etc/passwd."""
    if owner is None:
        return 0, 0
    if isinstance(owner, int) and not isinstance(owner, bool):
        return owner, owner
    if isinstance(owner, (tuple, list)) and len(owner) == 2:
        uid, gid = owner
    elif isinstance(owner, str):
        uid, _, gid = owner.partition(":")
        gid = gid or uid
    else:
        uid = gid = None
    try:
        uid, gid = int(uid), int(gid)  # type: ignore[arg-type]
        if uid < 0 or gid < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise BuildError(f"owner {owner!r} must be numeric, e.g. '1000:1000': the embedded "
                         "builder does not look names up in the image's /etc/passwd.") from None
    return uid, gid


def _strs(values: Any, what: str) -> list[str]:
    if isinstance(values, str):
        return [values]
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise BuildError(f"{what} must be a string or a list of strings, not {values!r}.")
    return list(values)


def command(value: Any, what: str) -> list[str]:
    """Exec form stays a list; a string is the shell form (`/bin/sh -c STRING`)."""
    if isinstance(value, str):
        return ["/bin/sh", "-c", value]
    if value is None:
        return []
    return _strs(value, what)


def env_name(name: Any) -> str:
    if not isinstance(name, str) or not name or "=" in name or any(c.isspace() for c in name):
        raise BuildError(f"{name!r} is not a valid environment variable name.")
    return name


def port(p: Any) -> str:
    text = str(p).strip().lower()
    num, _, proto = text.partition("/")
    proto = proto or "tcp"
    if not num.isdigit() or not 0 < int(num) < 65536 or proto not in ("tcp", "udp", "sctp"):
        raise BuildError(f"{p!r} is not a port: give a number 1-65535, optionally /tcp or /udp.")
    return f"{int(num)}/{proto}"
