"""The errors nbimages raises for a user's mistake: one base class, each message says what to do.

Internal bugs still raise ordinary exceptions; these are for problems the user can fix
(a bad reference, a missing file, no engine running, a registry refusing credentials).
The notebook skin shows them as one paragraph instead of a traceback.
"""

from __future__ import annotations


class NbimagesError(Exception):
    """Base of every user-facing error; `str(err)` is a complete one-paragraph message."""


class InvalidReference(NbimagesError, ValueError):
    """An image reference or source string that cannot be parsed."""


class UnknownTransport(NbimagesError, ValueError):
    """A `transport:` prefix nbimages does not know."""


class ImageNotFound(NbimagesError, LookupError):
    """The named image does not exist where it was looked for."""


class InvalidImage(NbimagesError):
    """A file or directory that is not a valid image (truncated tar, missing manifest, ...)."""


class DigestMismatch(NbimagesError):
    """Content did not hash to the digest it was announced with; nothing was stored."""


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
