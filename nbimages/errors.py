"""The errors nbimages raises for a user's mistake: one base class, each message says what to do.

Internal bugs still raise ordinary exceptions; these are for problems the user can fix
(a bad reference, a missing file, no engine running, a registry refusing credentials).
The notebook skin shows them as one paragraph instead of a traceback.
"""

from __future__ import annotations

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
    """Content did not hash to the digest it was announced with; nothing was stored.

    `expected`/`actual` are the digests, `expected_size`/`actual_size` the byte counts (None
    when not known), `what` names the content ("blob", "layer 2 of app:1", ...).
    """

    def __init__(self, message: str, *, expected: str | None = None, actual: str | None = None,
                 what: str = "content", expected_size: int | None = None,
                 actual_size: int | None = None):
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
