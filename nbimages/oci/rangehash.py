"""Digests of byte ranges of open files, computed in a helper process, off this one's GIL.

Checking a layer tar against its diff_id is SHA-256 of every byte, about as much CPU as
reading its headers and walking its files. hashlib releases the GIL while it hashes, but a
thread hashing beside Python code must take the GIL back after every read and every update,
and waits each time for the interpreter's switch interval: on two cores the hash then runs
at about half speed. One helper process (`hashhelper.py` run as a script: `python -I -S`,
the standard library only) hashes the ranges it is sent, each on an open file descriptor passed
over a Unix socket, so it hashes the very file the reader has open, and answers with the
digest and the number of bytes it read. The helper starts on first use, serves the whole
process, and ends when its socket closes (at exit, or when this process dies).

When a helper cannot start or dies, `submit` raises `Unavailable` (or the future does) and
the caller hashes in a thread as before. `NBIMAGES_HASH_HELPER=0` turns the helper off.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future

from . import hashhelper

WORKERS = min(4, max(2, os.cpu_count() or 2))  # ranges hashed at once, one per core
MIN_BYTES = 4 << 20  # below this, a thread is as fast as a message round trip
_MESSAGE = hashhelper.MESSAGE


class Unavailable(Exception):
    """The helper process could not be used; hash in this process instead."""


def enabled() -> bool:
    off = ("0", "no", "false", "off")
    return os.environ.get("NBIMAGES_HASH_HELPER", "1").strip().lower() not in off


class RangeHasher:
    """A client of one helper process; `submit` is safe from any thread."""

    def __init__(self, workers: int = WORKERS):
        self._workers = workers
        self._lock = threading.Lock()
        self._pid = 0  # the process that started the helper (a fork must start its own)
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._pending: dict[int, Future] = {}
        self._next = 0
        self._failed = False

    def submit(self, fd: int, offset: int, length: int, alg: str = "sha256") -> Future:
        """A future of (hex digest, bytes read) for up to `length` bytes of `fd` from
        `offset` (fewer where the file ends). The helper gets a duplicate of `fd`, so the
        caller may close its own at once. Unavailable when the helper cannot be used."""
        if alg not in hashlib.algorithms_guaranteed:
            raise Unavailable(f"unknown hash {alg}")
        with self._lock:
            sock = self._connected()
            job = self._next
            self._next += 1
            fut: Future = Future()
            self._pending[job] = fut
            try:
                socket.send_fds(sock, [f"{job} {offset} {length} {alg}".encode()], [fd])
            except OSError as e:
                self._pending.pop(job, None)
                self._broken(f"cannot reach the hash helper: {e}")
                raise Unavailable(str(e)) from None
        return fut

    def _connected(self) -> socket.socket:
        """The socket to a running helper, started here if there is none (lock held)."""
        if self._pid != os.getpid():  # first use, or a forked child: never share a helper
            self._forget()
            self._pid = os.getpid()
        if self._failed:
            raise Unavailable("the hash helper failed before")
        if self._sock is not None:
            return self._sock
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except (OSError, AttributeError) as e:  # no such sockets on this system
            self._failed = True
            raise Unavailable(f"cannot start the hash helper: {e}") from None
        try:
            if not sys.executable:
                raise OSError("no Python executable to run it with")
            script = os.path.abspath(hashhelper.__file__)
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", script, str(theirs.fileno()), str(self._workers)],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
        except OSError as e:
            ours.close()
            self._failed = True
            raise Unavailable(f"cannot start the hash helper: {e}") from None
        finally:
            theirs.close()
        self._sock = ours
        threading.Thread(target=self._replies, args=(ours,), name="nbimages-hash-replies",
                         daemon=True).start()
        return ours

    def _forget(self) -> None:
        """In a forked child: drop the parent's helper without ending it (closing this copy
        of the socket only, so the parent's helper still ends when the parent does)."""
        if self._sock is not None:
            self._sock.close()
        self._sock, self._proc, self._pending, self._failed = None, None, {}, False
        self._pid = 0

    def _replies(self, sock: socket.socket) -> None:
        while True:
            try:
                msg = sock.recv(_MESSAGE)
            except OSError:
                msg = b""
            if not msg:
                with self._lock:
                    if self._sock is sock:
                        self._broken("the hash helper ended")
                return
            job, status, rest = msg.decode().split(" ", 2)
            with self._lock:
                fut = self._pending.pop(int(job), None)
            if fut is None:
                continue
            if status == "ok":
                hexdigest, count = rest.split()
                fut.set_result((hexdigest, int(count)))
            else:
                fut.set_exception(OSError(rest))

    def _broken(self, why: str) -> None:
        """Fail what is pending and use no helper from now on (lock held)."""
        self._failed = True
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            fut.set_exception(Unavailable(why))
        if self._sock is not None:
            _hang_up(self._sock)
            self._sock = None

    def close(self) -> None:
        """End the helper: it finishes what it holds and exits; wait for it briefly."""
        with self._lock:
            sock, proc = self._sock, self._proc
            self._sock, self._proc = None, None
        if sock is not None and self._pid == os.getpid():
            _hang_up(sock)
        if proc is not None and self._pid == os.getpid():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs (for tests)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None


def _hang_up(sock: socket.socket) -> None:
    """Close `sock` so that the helper sees the end at once: shutdown first, since a thread
    blocked reading it would otherwise keep the connection open."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


_hasher = RangeHasher()
atexit.register(_hasher.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_hasher._forget)


def submit(fd: int, offset: int, length: int, alg: str = "sha256") -> Future:
    """`RangeHasher.submit` on the process's shared helper; Unavailable when turned off."""
    if not enabled():
        raise Unavailable("NBIMAGES_HASH_HELPER is off")
    return _hasher.submit(fd, offset, length, alg)


def helper() -> RangeHasher:
    return _hasher
