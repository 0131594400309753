"""The errors nbimages raises for a user's mistake: one base class, each message says what to do.

Internal bugs still raise ordinary exceptions; these are for problems the user can fix
(a bad reference, a missing file, no engine running, a registry refusing credentials).
The notebook skin shows them as one paragraph instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os as _os

from .redact import scrub_value


class NbimagesError(Exception):
    """Base of every user-facing error; `str(err)` is a complete one-paragraph message.

    Messages are scrubbed of credentials and tokens (see nbimages.redact), so registry text
    quoted in them never shows a secret in str(), repr() or args.
    """

    def __init__(self, *args):
        super().__init__(*(scrub_value(a) for a in args))


class InvalidReference(NbimagesError, ValueError):
    """An image reference or source string that cannot be parsed."""


class UnknownTransport(NbimagesError, ValueError):
    """A `transport:` prefix nbimages does not know."""


class ImageNotFound(NbimagesError, LookupError):
    """The named image does not exist where it was looked for."""


class InvalidImage(NbimagesError):
    """A file or directory that is not a valid image (truncated tar, missing manifest, ...)."""


class DigestMismatch(NbimagesError):
    """Content did not hash to the digest (or length) it was announced with; nothing was stored.

    `what` names the content ("blob sha256:…", "layer 2 uncompressed"); `expected`/`actual`
    are digests and `expected_size`/`actual_size` byte counts (None where not known).
    Callers higher up re-raise with the image, the layer and the fix.
    """

    def __init__(self, message: str = "", *, expected: str | None = None,
                 actual: str | None = None, what: str = "content",
                 expected_size: int | None = None, actual_size: int | None = None):
        super().__init__(message)
        self.expected = expected
        self.actual = actual
        self.what = what
        self.expected_size = expected_size
        self.actual_size = actual_size


class StoreDamaged(DigestMismatch):
    """A blob of the local store no longer hashes to its digest (a disk or a hand changed it).

    `image` and `layer` (index) say where it was met when known; the message names the
    command that repairs the store.
    """

    def __init__(self, message: str, *, image: str | None = None, layer: int | None = None,
                 **kw):
        super().__init__(message, **kw)
        self.image = image
        self.layer = layer


class UnsafePath(NbimagesError):
    """A layer entry that would escape the root (`..`, absolute links), reported and never followed."""


class InvalidPlatform(NbimagesError, ValueError):
    """A platform string that is not os/arch[/variant]."""


class PlatformNotFound(NbimagesError, LookupError):
    """An index / manifest list has no entry for the requested platform."""


class EngineUnavailable(NbimagesError):
    """The Docker engine is needed but does not answer."""


class RegistryError(NbimagesError):
    """A registry refused or failed a request."""


class AuthenticationError(RegistryError):
    """The registry refused the credentials (or asked for some and none were found)."""


class BuildError(NbimagesError):
    """A recipe or Dockerfile step that cannot be built."""


class OSFailure(NbimagesError):
    """The operating system refused a read or write the user can fix: no space left, permission
    denied, a read-only file system. `errno` and `filename` are those of the OSError."""

    def __init__(self, message: str, errno: int | None = None, filename=None):
        super().__init__(message)
        self.errno = errno
        self.filename = filename


_OS_FIXES = {
    "ENOSPC": ("no space is left on the device", "Free space there, or point NBIMAGES_HOME at a "
               "disk with room (images are kept in the store under it)"),
    "EDQUOT": ("the disk quota is used up", "Free space there, or point NBIMAGES_HOME at a "
               "disk with room"),
    "EACCES": ("permission is denied", "It belongs to another user or is not writable for you: "
               "fix its ownership or permissions, or point NBIMAGES_HOME (the store) or the "
               "output path at a directory of your own"),
    "EPERM": ("the operation is not permitted", "Fix the ownership or permissions of that "
              "place, or use a directory of your own (NBIMAGES_HOME for the store)"),
    "EROFS": ("the file system is read-only", "Write somewhere writable: set NBIMAGES_HOME for "
              "the store, or give another output path"),
}


def os_failure(err: BaseException, doing: str = "", fix: str | None = None) -> "OSFailure | None":
    """The one-paragraph error for an OSError a user can fix (no space, permission denied,
    read-only file system), or None for other errors (which stay what they are). With `fix`,
    every OSError is the user's to fix, and `fix` says how where no better advice is known."""
    if isinstance(err, OSFailure):
        return err
    if not isinstance(err, OSError):
        return None
    name = _errno.errorcode.get(err.errno or 0, "")
    if name in _OS_FIXES:
        what, fix = _OS_FIXES[name]
    elif fix is not None:
        what = "the operating system refused"
    else:
        return None
    where = err.filename if err.filename is not None else err.filename2
    place = f" at {_os.fsdecode(where)}" if where is not None else ""
    head = f"{doing} failed: " if doing else ""
    return OSFailure(f"{head}{what}{place} ({err.strerror or err}). {fix}. Nothing "
                     "half-written was kept; run the command again afterwards.", err.errno, where)


@contextlib.contextmanager
def os_errors(doing: str = "", fix: str | None = None):
    """Turn an OSError a user can fix into OSFailure (see os_failure); others pass through."""
    try:
        yield
    except OSError as err:
        failure = os_failure(err, doing, fix)
        if failure is None:
            raise
        raise failure from None
