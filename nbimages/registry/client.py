"""A thin client for the distribution API (OCI distribution-spec), on `requests`.

What it does and nothing more: ping, the auth challenge, GET/HEAD/PUT manifests (raw bytes,
never re-serialised, digests checked), HEAD/GET blobs streamed to disk while hashing (with
Range resume), POST/PATCH/PUT uploads (streamed, resumable), cross-repository mounts, tag
lists and the catalog (Link pagination). Retries 429/5xx and dropped connections with a
bounded backoff.

Plain http is used for loopback registries (localhost, 127.0.0.0/8, ::1), for hosts in
NBIMAGES_INSECURE_REGISTRIES (comma-separated), or with insecure=True; https otherwise.
A CA bundle comes from the `ca_bundle` argument, NBIMAGES_CA_BUNDLE, Docker's
/etc/docker/certs.d/<host>/ca.crt, or REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import time
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator
from urllib.parse import urlencode, urljoin, urlsplit

from ..errors import (AuthenticationError, DigestMismatch, ImageNotFound, OSFailure,
                      RegistryError, os_errors)
from ..oci import digest as dg, mediatypes as mt
from ..progress import note, waiting
from ..reference import Reference
from .auth import Authenticator, Credentials, scope_for

if TYPE_CHECKING:
    import requests


def _requests():
    """requests (~0.1 s to import with urllib3): loaded when a registry is first contacted."""
    import requests
    import requests.adapters  # noqa: F401 - HTTPAdapter
    return requests

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MANIFEST_LIMIT = 16 << 20
MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+prettyjws",
            "application/vnd.docker.distribution.manifest.v1+json")
_RETRY_STATUS = {429, 500, 502, 503, 504}
USER_AGENT = "nbimages (+https://pypi.org/project/nbimages)"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def default_timeout() -> float:
    """NBIMAGES_REGISTRY_TIMEOUT: seconds to wait for a registry's answer (default 60)."""
    try:
        value = float(os.environ.get("NBIMAGES_REGISTRY_TIMEOUT", "60"))
    except ValueError:
        return 60.0
    return value if value > 0 else 60.0


def _is_refused(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionRefusedError):
            return True
        if "Connection refused" in str(exc) or "Errno 111" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__ or (exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None)
    return False


def _is_unresolved(exc: BaseException) -> bool:
    """The registry's host name did not resolve: retrying will not help, say so at once."""
    text = str(exc)
    return "NameResolutionError" in text or "Failed to resolve" in text


def registry_errors(resp: requests.Response) -> str:
    """The registry's own error text (distribution's {"errors":[{code,message}]}), short."""
    try:
        doc = resp.json()
        errs = doc.get("errors") or []
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs)
    except (ValueError, AttributeError):
        text = ""
    if not text:
        text = (resp.text or "")[:200].strip() if resp.headers.get("Content-Type", "").startswith(
            ("text/", "application/json")) else ""
    return text


class RegistryClient:
    """One registry host: sessions, auth and the API calls; thread-safe for parallel blobs."""

    def __init__(self, registry: str, *, insecure: bool | None = None, ca_bundle: str | None = None,
                 credentials: Credentials | None = None, timeout: float | None = None,
                 retries: int | None = None, lookup_credentials: bool = True):
        ref = Reference.parse(f"{registry}/x")
        self.registry = ref.registry
        self.host = ref.api_host
        if insecure is None and ca_bundle:
            insecure = False  # a CA bundle means TLS, even on loopback
        # Loopback picked plain http on its own: a TLS registry there answers 400, then use https.
        self._may_upgrade = insecure is None and ref.is_loopback
        if insecure is None:
            listed = {h.strip() for h in os.environ.get("NBIMAGES_INSECURE_REGISTRIES", "").split(",") if h.strip()}
            insecure = ref.is_loopback or self.registry in listed or ref.hostname in listed
            self._may_upgrade = self._may_upgrade and self.registry not in listed and ref.hostname not in listed
        self.insecure = insecure
        self.base = f"{'http' if insecure else 'https'}://{self.host}"
        self.timeout = timeout if timeout is not None else default_timeout()
        self.retries = retries if retries is not None else _env_int("NBIMAGES_REGISTRY_RETRIES", 4)
        self.backoff = float(os.environ.get("NBIMAGES_REGISTRY_BACKOFF", "0.5"))
        self.auth = Authenticator(self.registry, credentials, lookup_credentials=lookup_credentials)
        self.session = _requests().Session()
        adapter = _requests().adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        ca = ca_bundle or os.environ.get("NBIMAGES_CA_BUNDLE")
        docker_ca = Path("/etc/docker/certs.d") / self.registry / "ca.crt"
        if not ca and docker_ca.is_file():
            ca = str(docker_ca)
        # Passed on every request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.verify: str | bool = ca or True

    def __repr__(self) -> str:
        return f"<RegistryClient {self.base}>"

    def close(self) -> None:
        self.session.close()

    # ---- the one place requests are sent --------------------------------------------------
    def request(self, method: str, url: str, *, scope: str | None = None, what: str = "",
                ok: tuple[int, ...] = (200,), headers: dict | None = None, data=None,
                stream: bool = False, allow_redirects: bool = True,
                retry_body: bool = True) -> requests.Response:
        """Send with auth and retries; map failures to RegistryError & co.

        `data` that is a stream is sent once (retry_body=False); bytes are re-sent on retry.
        """
        if not url.startswith(("http://", "https://")):
            url = urljoin(self.base + "/", url.lstrip("/"))
        attempt = 0
        answered_challenge = False
        while True:
            hdrs = dict(headers or {})
            auth = self.auth.header(scope)
            if auth:
                hdrs["Authorization"] = auth
            try:
                with waiting(f"the registry {self.registry} ({what or method + ' ' + url})",
                             self.timeout):
                    resp = self.session.request(method, url, headers=hdrs, data=data,
                                                stream=stream, timeout=self.timeout,
                                                allow_redirects=allow_redirects, verify=self.verify)
            except _requests().exceptions.SSLError as e:
                raise RegistryError(
                    f"TLS with the registry {self.registry} failed ({_ssl_reason(e)}). If it uses "
                    "a private CA, pass ca_bundle='/path/ca.pem' (or set NBIMAGES_CA_BUNDLE, or put "
                    f"it at /etc/docker/certs.d/{self.registry}/ca.crt); if it speaks plain http, "
                    "pass insecure=True.") from None
            except (_requests().ConnectionError, _requests().Timeout) as e:
                if (_is_refused(e) or _is_unresolved(e) or attempt >= self.retries
                        or not (retry_body or data is None)):
                    raise self._connection_error(e) from None
                if isinstance(e, _requests().Timeout):
                    self._retrying(f"the registry {self.registry} did not answer "
                                   f"{what or method + ' ' + url} within {self.timeout:g} s "
                                   "(NBIMAGES_REGISTRY_TIMEOUT)", attempt)
                attempt += 1
                self._sleep(attempt, None)
                continue
            if resp.status_code == 400 and url.startswith(f"http://{self.host}/") and \
                    (retry_body or data is None) and (self.base.startswith("https://") or
                                                      self._may_upgrade and self._answers_https_only(resp)):
                resp.close()  # another thread may have found out first: its base is https now
                self._may_upgrade, self.insecure = False, False
                self.base = f"https://{self.host}"
                url = "https://" + url[len("http://"):]
                continue
            if resp.status_code == 401 and not answered_challenge:
                challenge = resp.headers.get("WWW-Authenticate")
                resp.close()
                if not challenge:
                    raise AuthenticationError(f"the registry {self.registry} refused access to "
                                              f"{what or url} (HTTP 401) without saying how to log in.")
                if not (retry_body or data is None):
                    raise RegistryError("internal: a streamed request met an auth challenge")
                self.auth.forget(scope)
                self.auth.answer(challenge, scope, self.session, self.timeout, self.verify)
                answered_challenge = True
                continue
            if resp.status_code in _RETRY_STATUS and attempt < self.retries and (retry_body or data is None):
                self._retrying(f"the registry {self.registry} answered HTTP {resp.status_code} "
                               f"for {what or method + ' ' + url}", attempt)
                attempt += 1
                retry_after = resp.headers.get("Retry-After")
                resp.close()
                self._sleep(attempt, retry_after)
                continue
            if resp.status_code in ok:
                return resp
            raise self._status_error(resp, what or f"{method} {url}", scope)

    def _answers_https_only(self, resp: requests.Response) -> bool:
        """A 400 over plain http: is it Go's "Client sent an HTTP request to an HTTPS server"?
        (A HEAD has no body to say so: ask GET /v2/ once.)"""
        text = resp.text[:200] if resp.request.method != "HEAD" else ""
        resp.close()
        if not text:
            with contextlib.suppress(_requests().RequestException):
                with self.session.get(f"{self.base}/v2/", timeout=self.timeout) as probe:
                    text = probe.text[:200] if probe.status_code == 400 else ""
        return "HTTP request to an HTTPS server" in text

    def _retrying(self, why: str, attempt: int) -> None:
        """Say why a request is sent again: on the transfer's progress, else in the log."""
        text = f"{why}; asking again (attempt {attempt + 2} of {self.retries + 1})"
        if not note(text):
            log.warning("%s", text)

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * (2 ** (attempt - 1)) * (0.75 + random.random() / 2)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), 30.0))
        time.sleep(min(delay, 30.0))

    def _connection_error(self, e: BaseException) -> RegistryError:
        if _is_refused(e):
            hint = ("nothing listens there. Is the registry running, and are host and port right?")
            return RegistryError(f"could not connect to the registry at {self.base}: connection "
                                 f"refused; {hint}")
        if _is_unresolved(e):
            return RegistryError(f"could not connect to the registry at {self.base}: the host name "
                                 f"{urlsplit(self.base).hostname!r} does not resolve (no DNS answer). "
                                 "Check the registry's name, and the network if it is right.")
        if isinstance(e, _requests().Timeout):
            return RegistryError(
                f"the registry at {self.base} accepted the connection but did not answer within "
                f"{self.timeout:g} s, {self.retries + 1} times. It is hung or overloaded: try again "
                "later, or wait longer per request with NBIMAGES_REGISTRY_TIMEOUT=SECONDS (or "
                "timeout= in the API); NBIMAGES_REGISTRY_RETRIES sets the number of attempts.")
        return RegistryError(f"the connection to the registry at {self.base} failed "
                             f"({e.__class__.__name__}) after {self.retries + 1} attempts. Check the "
                             "network and that the registry is up, then try again.")

    def _status_error(self, resp: requests.Response, what: str, scope: str | None) -> RegistryError:
        code = resp.status_code
        detail = registry_errors(resp)
        resp.close()
        tail = f" The registry said: {detail}." if detail else ""
        creds = self.auth.known_credentials()
        who = f"user {creds.username!r} (from {creds.source})" if creds else "anonymous access"
        if code == 401:
            return AuthenticationError(
                f"the registry {self.registry} refused {who} for {what} (HTTP 401).{tail} "
                f"Check your credentials, or run `docker login {self.registry}`.")
        if code == 403:
            return AuthenticationError(
                f"the registry {self.registry} denied {who} for {what} (HTTP 403): the account has "
                f"no permission for this repository or action.{tail}")
        if code == 404:
            return ImageNotFound(f"{what} was not found in the registry {self.registry} (HTTP 404).{tail} "
                                 "Check the repository name and tag (nbimages.tags(REF) lists tags).")
        if code == 429:
            return RegistryError(f"the registry {self.registry} is rate limiting requests (HTTP 429) "
                                 f"for {what}, still after {self.retries} retries.{tail} Wait and try "
                                 "again, or log in to get a higher limit.")
        if code >= 500:
            return RegistryError(f"the registry {self.registry} failed with HTTP {code} for {what}"
                                 f"{' after ' + str(self.retries) + ' retries' if code in _RETRY_STATUS else ''}."
                                 f"{tail} It is a server-side problem; try again later.")
        return RegistryError(f"the registry {self.registry} answered HTTP {code} for {what}.{tail}")

    # ---- ping -----------------------------------------------------------------------------
    def ping(self) -> None:
        """GET /v2/ (answering its auth challenge); RegistryError if it is not a registry."""
        self.request("GET", "/v2/", what="the API root /v2/").close()

    # ---- manifests ------------------------------------------------------------------------
    def get_manifest(self, repository: str, identifier: str, *, push: bool = False) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest) of a manifest or index; the digest is verified."""
        what = f"the manifest {repository}:{identifier}" if not dg.is_digest(identifier) else \
            f"the manifest {repository}@{identifier}"
        resp = self.request("GET", f"/v2/{repository}/manifests/{identifier}",
                            scope=scope_for(repository, push), what=what,
                            headers={"Accept": MANIFEST_ACCEPT}, stream=True)
        with resp:
            raw = resp.raw.read(MANIFEST_LIMIT + 1, decode_content=True)
        if len(raw) > MANIFEST_LIMIT:
            raise RegistryError(f"{what} is larger than {MANIFEST_LIMIT >> 20} MiB; refusing it.")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        digest = dg.of_bytes(raw)
        if dg.is_digest(identifier):
            dg.check(identifier, _hash_as(identifier, raw), what)
        announced = resp.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and not dg.is_digest(identifier):
            dg.check(announced, digest, what)
        return raw, self._manifest_type(raw, ctype, what), digest

    @staticmethod
    def _manifest_type(raw: bytes, ctype: str, what: str) -> str:
        if ctype in _SCHEMA1:
            raise RegistryError(f"{what} is a Docker schema 1 manifest ({ctype}), which is deprecated "
                                "and not supported. Re-push the image with a current Docker or skopeo.")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RegistryError(f"{what} is not JSON (Content-Type {ctype or 'none'}).") from None
        declared = doc.get("mediaType") if isinstance(doc, dict) else None
        if isinstance(doc, dict) and doc.get("schemaVersion") == 1:
            raise RegistryError(f"{what} is a Docker schema 1 manifest, which is deprecated and not "
                                "supported. Re-push the image with a current Docker or skopeo.")
        mtype = declared or (ctype if (mt.is_manifest(ctype) or mt.is_index(ctype)) else None)
        if mtype is None and isinstance(doc, dict):
            if "manifests" in doc:
                mtype = mt.OCI_INDEX
            elif "config" in doc and "layers" in doc:
                mtype = mt.OCI_MANIFEST
        if not (mt.is_manifest(mtype) or mt.is_index(mtype)):
            raise RegistryError(
                f"{what} has the media type {mtype or ctype or 'none'!r}, which is not an image: "
                "nbimages reads OCI image manifests and indexes and Docker schema 2 manifests and "
                "manifest lists. It may be an artifact (a Helm chart, a signature) rather than an image.")
        return mtype

    def head_manifest(self, repository: str, identifier: str) -> str | None:
        """The digest of a tag (HEAD, no body), or None if the registry does not say."""
        resp = self.request("HEAD", f"/v2/{repository}/manifests/{identifier}",
                            scope=scope_for(repository), what=f"the manifest {repository}:{identifier}",
                            headers={"Accept": MANIFEST_ACCEPT})
        resp.close()
        return resp.headers.get("Docker-Content-Digest")

    def put_manifest(self, repository: str, identifier: str, raw: bytes, media_type: str) -> str:
        """PUT the exact bytes; returns their digest (checked against Docker-Content-Digest)."""
        digest = dg.of_bytes(raw)
        what = f"the manifest upload to {repository}:{identifier}"
        resp = self.request("PUT", f"/v2/{repository}/manifests/{identifier}",
                            scope=scope_for(repository, push=True), what=what, ok=(200, 201, 202),
                            headers={"Content-Type": media_type}, data=raw)
        resp.close()
        announced = resp.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:"):
            dg.check(digest, announced, what)
        return digest

    # ---- blobs: download ------------------------------------------------------------------
    def has_blob(self, repository: str, digest: str, *, push: bool = False) -> bool:
        resp = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=scope_for(repository, push),
                            what=f"blob {dg.short(digest)}", ok=(200, 404))
        resp.close()
        return resp.status_code == 200

    def read_blob(self, repository: str, digest: str, limit: int = MANIFEST_LIMIT) -> bytes:
        """A small blob (a config) read whole and verified."""
        what = f"the blob {digest} of {repository}"
        resp = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=scope_for(repository),
                            what=what, stream=True)
        with resp:
            data = resp.raw.read(limit + 1, decode_content=True)
        if len(data) > limit:
            raise RegistryError(f"{what} is larger than {limit >> 20} MiB; it is not a config.")
        dg.check(digest, _hash_as(digest, data), what)
        return data

    def download_blob(self, repository: str, digest: str, size: int | None, store,
                      on_bytes: Callable[[int], None] | None = None,
                      on_resume: Callable[[int], None] | None = None) -> Path:
        """Stream a blob into `store` (an OCILayout/Store), hashing while writing.

        `on_resume(offset)` is told the byte a resumed download continues from (0 when the
        registry ignored the Range request and the blob is fetched from its start again).

        The bytes go to `<store tmp>/downloads/<alg>-<hex>.partial`; a later call resumes from
        there with a Range request. Only a complete blob whose digest matches is renamed into
        `blobs/` (atomic, as OCILayout does), so a killed pull leaves temp files only.
        """
        import filelock

        target = store.blob_path(digest)
        if target.is_file():
            return target
        with os_errors(f"downloading {digest} into {store.path}"):
            partial = _partial_path(store, digest)
            partial.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(partial) + ".lock", timeout=3600):
            if target.is_file():
                return target
            for fresh_start in (False, True):
                if fresh_start:
                    with contextlib.suppress(FileNotFoundError):
                        partial.unlink()
                resumed = partial.exists() and partial.stat().st_size > 0
                try:
                    with os_errors(f"downloading {digest} into {store.path}"):
                        self._fetch_into(repository, digest, size, partial, on_bytes, on_resume)
                    break
                except OSFailure:
                    # a full or unwritable store: a partial file would only keep it full
                    discard_partial(store, digest)
                    raise
                except DigestMismatch:
                    with contextlib.suppress(FileNotFoundError):
                        partial.unlink()
                    if not resumed:
                        raise
                    log.info("resumed download of %s did not verify; fetching it again", digest)
            os.chmod(partial, 0o644)
            os.replace(partial, target)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(partial) + ".lock")
        return target

    def _fetch_into(self, repository: str, digest: str, size: int | None, partial: Path,
                    on_bytes: Callable[[int], None] | None,
                    on_resume: Callable[[int], None] | None = None) -> None:
        alg = dg.parse(digest)[0]
        h = hashlib.new(alg)
        offset = 0
        if partial.exists():
            if size is not None and partial.stat().st_size > size:
                partial.unlink()
            else:
                with open(partial, "rb") as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                        offset += len(chunk)
                if offset and on_bytes:
                    on_bytes(offset)
                if offset and on_resume:
                    on_resume(offset)
        what = f"the blob {digest} of {repository}"
        failures = 0
        with open(partial, "ab") as out:
            while size is None or offset < size:
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                resp = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=scope_for(repository),
                                    what=what, stream=True, headers=headers, ok=(200, 206, 416))
                with resp:
                    if resp.status_code == 416 or (offset and resp.status_code == 200) or (
                            resp.status_code == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-")):
                        # The server ignored or refused our Range: start over from byte 0.
                        if resp.status_code == 416 and size is not None and offset == size:
                            break
                        if on_bytes and offset:
                            on_bytes(-offset)
                        if on_resume and offset:
                            on_resume(0)
                        out.seek(0)
                        out.truncate()
                        h = hashlib.new(alg)
                        offset = 0
                        if resp.status_code == 416:
                            continue
                    try:
                        while chunk := resp.raw.read(CHUNK, decode_content=True):
                            out.write(chunk)
                            h.update(chunk)
                            offset += len(chunk)
                            if on_bytes:
                                on_bytes(len(chunk))
                            if size is not None and offset > size:
                                break
                    except Exception as e:  # noqa: BLE001 - only a broken stream is retried
                        if not _is_stream_error(e):
                            raise
                        failures += 1
                        if failures > self.retries:
                            raise RegistryError(f"the download of {what} kept breaking off "
                                                f"({e.__class__.__name__}); try again later.") from None
                        out.flush()
                        self._sleep(failures, None)
                        continue
                if size is None:
                    break
                if offset < size:
                    failures += 1
                    if failures > self.retries:
                        raise RegistryError(f"the registry {self.registry} ended {what} after "
                                            f"{offset} of {size} bytes, repeatedly.")
                    continue
                break
            out.flush()
            os.fsync(out.fileno())
        actual = f"{alg}:{h.hexdigest()}"
        if size is not None and offset != size:
            raise DigestMismatch(f"{what} was announced with {size} bytes but {offset} arrived; it "
                                 "was not stored. Pull again; if it persists the registry is damaged.")
        dg.check(digest, actual, what)

    # ---- blobs: upload --------------------------------------------------------------------
    def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Cross-repository mount; None if mounted, else the upload URL the registry opened."""
        scope = f"{scope_for(repository, True)} {scope_for(from_repository)}"
        resp = self.request("POST", f"/v2/{repository}/blobs/uploads/?"
                            + urlencode({"mount": digest, "from": from_repository}),
                            scope=scope, what=f"mounting blob {dg.short(digest)} from {from_repository}",
                            ok=(201, 202))
        resp.close()
        if resp.status_code == 201:
            return None
        return urljoin(resp.url, resp.headers["Location"])

    def start_upload(self, repository: str) -> str:
        resp = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope_for(repository, True),
                            what=f"starting an upload to {repository}", ok=(202,))
        resp.close()
        return urljoin(resp.url, resp.headers["Location"])

    def upload_blob(self, repository: str, digest: str, size: int, open_stream: Callable[[], object],
                    on_bytes: Callable[[int], None] | None = None, *, location: str | None = None,
                    chunk_size: int | None = None) -> None:
        """Upload a blob streamed from `open_stream()`: POST, PATCH (streamed), PUT ?digest=.

        `chunk_size` splits the body into several PATCHes (Content-Range); a broken PATCH is
        resumed from the offset the registry reports for the upload session.
        """
        scope = scope_for(repository, True)
        what = f"the upload of blob {dg.short(digest)} to {repository}"
        url = location or self.start_upload(repository)
        sent = 0
        reported = [0]  # bytes announced to on_bytes, rewound when the registry kept fewer
        failures = 0
        chunk = chunk_size or max(size, 1)

        def count(n: int) -> None:
            reported[0] += n
            if on_bytes:
                on_bytes(n)
        while sent < size:
            try:
                with contextlib.closing(open_stream()) as stream:
                    _skip(stream, sent)
                    while sent < size:
                        n = min(chunk, size - sent)
                        body = _Body(stream, n, count)
                        headers = {"Content-Type": "application/octet-stream",
                                   "Content-Length": str(n)}
                        if chunk_size or sent:
                            headers["Content-Range"] = f"{sent}-{sent + n - 1}"
                        resp = self.request("PATCH", url, scope=scope, what=what, ok=(202,),
                                            headers=headers, data=body, retry_body=False)
                        resp.close()
                        url = urljoin(url, resp.headers.get("Location", url))
                        sent += n
            except RegistryError as e:
                failures += 1
                if failures > self.retries or isinstance(e, AuthenticationError):
                    raise
                self._sleep(failures, None)
                got = self._upload_offset(url, scope, what)
                if got is None:
                    url, got = self.start_upload(repository), 0
                count(got - reported[0])
                sent = got
        sep = "&" if "?" in url else "?"
        resp = self.request("PUT", f"{url}{sep}{urlencode({'digest': digest})}", scope=scope,
                            what=what, ok=(201, 204), headers={"Content-Length": "0"}, data=b"")
        resp.close()

    def _upload_offset(self, url: str, scope: str, what: str) -> int | None:
        try:
            resp = self.request("GET", url, scope=scope, what=what, ok=(204,))
        except RegistryError:
            return None
        resp.close()
        # "0-<last byte>"; distribution 2.8 says "0-0" both for nothing and for one byte stored
        # (others "0--1" for nothing): read both as nothing and resend from the start.
        m = re.match(r"^(?:bytes=)?0-(-?\d+)$", resp.headers.get("Range", "").strip())
        last = int(m.group(1)) if m else 0
        return last + 1 if last > 0 else 0

    # ---- listings -------------------------------------------------------------------------
    def _paged(self, path: str, key: str, scope: str | None, what: str, page: int = 1000) -> Iterator[str]:
        url = f"{path}?n={page}"
        while url:
            resp = self.request("GET", url, scope=scope, what=what)
            with resp:
                doc = resp.json() if resp.content else {}
                nxt = resp.links.get("next", {}).get("url")
            yield from doc.get(key) or []
            url = urljoin(resp.url, nxt) if nxt else None

    def tags(self, repository: str, page: int = 1000) -> list[str]:
        return list(self._paged(f"/v2/{repository}/tags/list", "tags", scope_for(repository),
                                f"the tags of {repository}", page))

    def catalog(self, page: int = 1000) -> list[str]:
        return list(self._paged("/v2/_catalog", "repositories", "registry:catalog:*",
                                "the catalog", page))


class _Body:
    """`n` bytes of a stream as an iterable with a length (requests then sets Content-Length)."""

    def __init__(self, stream, n: int, on_bytes):
        self._stream, self._n, self._on = stream, n, on_bytes

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        left = self._n
        while left:
            data = self._stream.read(min(CHUNK, left))
            if not data:
                raise RegistryError("the source ended before the blob was fully uploaded; it is "
                                    "shorter than its descriptor says.")
            left -= len(data)
            if self._on:
                self._on(len(data))
            yield data


def _skip(stream, n: int) -> None:
    if not n:
        return
    try:
        stream.seek(n)
        return
    except (AttributeError, OSError, ValueError):
        pass
    while n:
        data = stream.read(min(CHUNK, n))
        if not data:
            raise RegistryError("the source ended early while resuming an upload.")
        n -= len(data)


def _hash_as(digest: str, data: bytes) -> str:
    alg = dg.parse(digest)[0]
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


def _is_stream_error(e: BaseException) -> bool:
    import http.client  # with ssl and email, ~10 ms: loaded when a registry is contacted
    import urllib3
    return isinstance(e, (_requests().RequestException, urllib3.exceptions.HTTPError,
                          http.client.HTTPException, ConnectionError, TimeoutError))


def _ssl_reason(e: BaseException) -> str:
    text = str(e)
    for key in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "hostname mismatch",
                "self-signed certificate", "unable to get local issuer certificate"):
        if key in text:
            return key.replace("_", " ").lower()
    return "certificate or protocol error"


def client_for(ref: Reference, *, insecure: bool | None = None, ca_bundle: str | None = None,
               credentials: Credentials | tuple[str, str] | None = None,
               timeout: float | None = None) -> RegistryClient:
    """A RegistryClient for the registry of `ref` (credentials as Credentials or (user, secret));
    `timeout`: seconds to wait for each answer (default NBIMAGES_REGISTRY_TIMEOUT, else 60)."""
    if isinstance(credentials, tuple):
        credentials = Credentials(credentials[0], credentials[1], "the credentials argument")
    return RegistryClient(ref.registry, insecure=insecure, ca_bundle=ca_bundle,
                          credentials=credentials, timeout=timeout)


def _partial_path(store, digest: str) -> Path:
    alg, hexd = dg.parse(digest)
    tmpdir = (store.tmpdir() if hasattr(store, "tmpdir") else store.path / "tmp") / "downloads"
    return tmpdir / f"{alg}-{hexd}.partial"


def discard_partial(store, digest: str) -> None:
    """Remove the partial download of `digest` (kept otherwise for a later pull to resume)."""
    with contextlib.suppress(OSError):
        _partial_path(store, digest).unlink()
