"""Tab completion of `%image` / `%%image` lines, independent of IPython's completer machinery.

`complete_line(text_until_cursor)` answers what the word at the cursor may become: a
subcommand, an option of that subcommand (or one of its choices), an image (store names,
`store:NAME`, transport prefixes, variables holding an Image) or a local path (after
`docker-archive:`, `oci:`, `oci-archive:`, and for arguments that name local files).
magics.py plugs it into IPython as a Matcher API v2 matcher that hides Jedi's and the other
matchers' results on `%image` lines.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NamedTuple

from ..commands.parsing import CELL_MAGIC, MAGIC, Command
from ..commands.verbs import TABLE, _image_types
from ..errors import NbimagesError
from ..store import existing_store

FILE_TRANSPORTS = ("docker-archive:", "oci-archive:", "oci:")  # followed by a local path
TRANSPORTS = ("docker-daemon:", "docker-archive:", "oci:", "oci-archive:", "docker://", "store:")
MAX_PATHS = 500

IMAGE, PATH = "image", "path"
# Arguments whose metavar does not say what they hold: (subcommand, argparse dest) -> kind.
KINDS = {
    ("from", "base"): IMAGE, ("push", "src"): IMAGE, ("copy-image", "src"): IMAGE,
    ("copy-image", "dest"): IMAGE, ("rm", "ref"): IMAGE, ("tag", "source"): IMAGE,
    ("explore", "diff"): IMAGE, ("verify", "expected"): IMAGE,
    ("save", "path"): PATH, ("load", "path"): PATH, ("copy", "src"): PATH,
    ("verify", "notebook"): PATH, ("freeze", "data"): PATH,
}
IMAGE_METAVARS = {"SOURCE", "A", "B", "IMAGE", "OTHER"}


class Match(NamedTuple):
    text: str
    type: str  # shown by JupyterLab next to the completion


def magic_words(text_until_cursor: str) -> tuple[list[str], str] | None:
    """The words after `%image`/`%%image` before the cursor and the word being typed,
    or None when the line is not an `%image` line (also `df = %image ...`)."""
    words = text_until_cursor.split()
    current = "" if not text_until_cursor or text_until_cursor[-1].isspace() else words.pop()
    for i, w in enumerate(words):
        if w in (MAGIC, CELL_MAGIC):
            return words[i + 1:], current
    return None


def complete_line(text_until_cursor: str, user_ns: dict[str, Any] | None = None
                  ) -> tuple[str, list[Match]] | None:
    """(word at the cursor, what it may become) for an `%image` line, None for other lines."""
    found = magic_words(text_until_cursor)
    if found is None:
        return None
    done, word = found
    if not done:
        subs = [Match(n, "subcommand") for n in TABLE.names() if n.startswith(word)]
        return word, subs + [Match(o, "option") for o in ("--help",) if o.startswith(word)]
    cmd = TABLE.commands.get(done[0])
    if cmd is None:
        return word, []
    return word, _complete_argument(cmd, done[1:], word, user_ns or {})


def _complete_argument(cmd: Command, done: list[str], word: str, user_ns: dict[str, Any]) -> list[Match]:
    parser = cmd.parser()
    options = {o: a for a in parser._actions for o in a.option_strings}
    pending: argparse.Action | None = None   # an option still waiting for its value
    positional = 0
    only_positionals = False
    for w in done:
        if pending is not None:
            pending = None
        elif w == "--":
            only_positionals = True
        elif w.startswith("-") and len(w) > 1 and not only_positionals:
            action = options.get(w)
            if action is not None and action.nargs != 0:
                pending = action
        else:
            positional += 1
    if pending is not None:
        return _complete_value(cmd, pending, word, user_ns)
    if word.startswith("-") and not only_positionals:
        if "=" in word:
            name, _, value = word.partition("=")
            action = options.get(name)
            if action is None or action.nargs == 0:
                return []
            return [Match(f"{name}={m.text}", m.type) for m in _complete_value(cmd, action, value, user_ns)]
        long_first = sorted(options, key=lambda o: (not o.startswith("--"), o))
        wanted = [o for o in long_first if o.startswith(word)]
        if word in ("-", "--"):
            wanted = [o for o in wanted if o.startswith("--")]
        return [Match(o, "option") for o in wanted]
    action = _positional_action(parser, positional)
    return _complete_value(cmd, action, word, user_ns) if action is not None else []


def _positional_action(parser: argparse.ArgumentParser, index: int) -> argparse.Action | None:
    """The positional argument that the index-th positional word belongs to."""
    for action in parser._actions:
        if action.option_strings:
            continue
        if action.nargs in ("+", "*", argparse.REMAINDER):
            return action
        if index == 0:
            return action
        index -= 1
    return None


def _complete_value(cmd: Command, action: argparse.Action, word: str, user_ns: dict[str, Any]) -> list[Match]:
    if action.choices:
        return [Match(str(c), "value") for c in action.choices if str(c).startswith(word)]
    kind = KINDS.get((cmd.name, action.dest)) or _kind_from_metavar(str(action.metavar or ""))
    if kind == PATH:
        return [Match(p, "path") for p in complete_path(word)]
    if kind == IMAGE:
        extra = ["scratch"] if cmd.name == "from" else []
        return complete_image(word, user_ns, extra)
    return []


def _kind_from_metavar(metavar: str) -> str | None:
    if metavar in IMAGE_METAVARS:
        return IMAGE
    if "DIR" in metavar or "FILE" in metavar or metavar.endswith((".ipynb", ".py")):
        return PATH
    return None


def complete_image(word: str, user_ns: dict[str, Any] | None = None, extra: tuple[str, ...] | list[str] = ()) -> list[Match]:
    """Store names, `store:NAME`, transport prefixes, Image variables; paths after a file
    transport (`docker-archive:/tmp/a.tar`) or for a bare path (a tar or layout on disk)."""
    for prefix in FILE_TRANSPORTS:
        if word.startswith(prefix):
            return [Match(prefix + p, "path") for p in complete_path(word[len(prefix):])]
    if word.startswith("store:"):
        return [Match("store:" + n, "image") for n in stored_image_names() if ("store:" + n).startswith(word)]
    if word.startswith(("docker-daemon:", "docker://")):
        return []
    if word.startswith(("/", "./", "../", "~")):
        return [Match(p, "path") for p in complete_path(word)]
    out = [Match(n, "image") for n in [*extra, *stored_image_names()] if n.startswith(word)]
    out += [Match(v, "variable") for v in image_variables(user_ns or {}) if v.startswith(word)]
    out += [Match(t, "transport") for t in TRANSPORTS if t.startswith(word)]
    return out


def complete_path(fragment: str) -> list[str]:
    """Local files and folders starting with `fragment` (folders end in '/'), as typed:
    a leading `~` stays, hidden entries only when the name typed so far starts with '.'."""
    if fragment == "~":
        return ["~/"]
    head, tail = os.path.split(fragment)
    folder = os.path.expanduser(head) if head else "."
    out: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.startswith(tail) or (entry.name.startswith(".") and not tail.startswith(".")):
                    continue
                text = os.path.join(head, entry.name) if head else entry.name
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                out.append(text + "/" if is_dir else text)
                if len(out) >= MAX_PATHS:
                    break
    except OSError:  # no such folder, or not readable: nothing to offer
        return []
    return sorted(out)


def stored_image_names() -> list[str]:
    """Names tagged in the local store (without creating a store where there is none)."""
    try:
        store = existing_store()
        return sorted(store.refs()) if store is not None else []
    except (OSError, ValueError, NbimagesError):
        return []


def image_variables(user_ns: dict[str, Any]) -> list[str]:
    """Notebook variables holding an Image or an Inspection (a SOURCE may name one)."""
    types = _image_types()
    return sorted(k for k, v in list(user_ns.items()) if not k.startswith("_") and isinstance(v, types))
