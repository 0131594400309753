"""A Debian mirror on 127.0.0.1 for the apt-step tests: a caching proxy of the host's mirror.

The tests may only reach loopback addresses, so the files are fetched from the Debian mirror
apt on this machine uses by a child process (as pip downloads wheels on the host) and kept
under NBIMAGES_TEST_CACHE/debian-mirror: a machine downloads each file once, and every later
session sees the same InRelease, so the same packages. `tamper` names files whose bytes the
proxy alters on the way (one byte flipped), to test that the builder refuses them.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import filelock

from bases import CACHE, debian_mirror

MIRROR_CACHE = CACHE / "debian-mirror"
_FETCH = ("import shutil, sys, urllib.request\n"
          "with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], 'wb') as f:\n"
          "    shutil.copyfileobj(r, f)\n")


def cached(path: str) -> Path:
    """The mirror file `path` (e.g. dists/bookworm/InRelease), fetched once per machine."""
    rel = Path(*[p for p in path.split("/") if p not in ("", ".", "..")])
    out = MIRROR_CACHE / rel
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(MIRROR_CACHE / ".lock"), timeout=600):
        if out.exists():
            return out
        tmp = out.with_name(out.name + ".part")
        proc = subprocess.run([sys.executable, "-c", _FETCH, f"{debian_mirror()}/{rel.as_posix()}",
                               str(tmp)], capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise FileNotFoundError(path)
        os.replace(tmp, out)
    return out


class DebianMirror:
    """`url` is http://127.0.0.1:PORT/debian; `requests` lists the paths asked for."""

    def __init__(self):
        self.tamper: set[str] = set()
        self.requests: list[str] = []
        handler = functools.partial(_Handler, self)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/debian"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, mirror: DebianMirror, *args, **kwargs):
        self.mirror = mirror
        super().__init__(*args, **kwargs)

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if not path.startswith("/debian/"):
            self.send_error(404)
            return
        rel = path[len("/debian/"):]
        self.mirror.requests.append(rel)
        try:
            data = cached(rel).read_bytes()
        except FileNotFoundError:
            self.send_error(404)
            return
        if any(t in rel for t in self.mirror.tamper):
            data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + \
                data[len(data) // 2 + 1:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
