"""Credentials and tokens never reach an error, a repr, a log line or a cell's output.

Every secret this process sends or receives (a password, the base64 of `user:password`, a
bearer or refresh token) is remembered here when it is first seen; `scrub(text)` replaces each
of them, in every encoding a server might echo it in, with `***`, and also anything shaped
like a credential (`Basic …`, `Bearer …`, `token=…`, `"password": "…"`, `user:pass@` in a
URL) whether or not it was ours. NbimagesError scrubs its message; log records of nbimages,
requests and urllib3 are scrubbed as they are made.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
_MIN_LENGTH = 4  # shorter values would mask ordinary words; no real secret is that short

_known: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None

_SHAPES = [
    (re.compile(r"(?i)\b(basic|bearer)(\s+|%20|\+)[A-Za-z0-9+/=._~%-]{4,}"), rf"\1\2{MASK}"),
    (re.compile(r"""(?i)((?:access_|refresh_|id_|identity)?token|password|passwd|secret|"""
                r"""authorization)(["']?\s*(?:[:=]|%3A|%3D)\s*["']?)"""
                r"""(?!\*\*\*)(?:(?:basic|bearer)(?:\s+|%20|\+))?[^\s"'&,;}<>]+"""),
     rf"\1\2{MASK}"),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/@\s:]+:)[^/@\s]+@"), rf"\1{MASK}@"),
]


def remember(*values: str | None) -> None:
    """Treat each value (and its base64 and URL-encoded forms) as a secret from now on."""
    global _pattern
    forms = set()
    for v in values:
        if not v or len(v) < _MIN_LENGTH:
            continue
        forms |= {v, quote(v, safe=""), quote_plus(v), base64.b64encode(v.encode()).decode()}
    forms = {f for f in forms if len(f) >= _MIN_LENGTH}
    with _lock:
        if forms <= _known:
            return
        _known.update(forms)
        _pattern = re.compile("|".join(re.escape(f) for f in sorted(_known, key=len, reverse=True)))


def remember_credentials(username: str, secret: str) -> None:
    """A user name and password/token: the secret, and the `user:secret` pair (Basic auth)."""
    remember(secret, f"{username}:{secret}")


def scrub(text: str) -> str:
    """`text` with every known secret and every credential-shaped value replaced by ***."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape, repl in _SHAPES:
        text = shape.sub(repl, text)
    return text


def scrub_value(value):
    """A string scrubbed; other values (numbers, None) as they are."""
    return scrub(value) if isinstance(value, str) else value


_SCRUBBED_LOGGERS = ("nbimages", "urllib3", "requests", "docker")
_previous_factory = logging.getLogRecordFactory()


def _record_factory(*args, **kwargs) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    if record.name.startswith(_SCRUBBED_LOGGERS):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report
            return record
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
    return record


if getattr(logging.getLogRecordFactory(), "__module__", "") != __name__:
    logging.setLogRecordFactory(_record_factory)
