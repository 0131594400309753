"""A small Alpine world for the apk-step tests: a base image and a signed repository on 127.0.0.1.

No Alpine mirror is reachable here, so the packages are made by this module in apk's own v2
format, independently of nbimages' reader: an .apk is three gzip streams (a signature tar
holding `.SIGN.RSA.<key>` over the control stream, the control tar with `.PKGINFO` and its
`datahash`, the data tar), written with tarfile and gzip and signed with the openssl command;
APKINDEX.tar.gz is a signature stream (`.SIGN.RSA256.<key>`) followed by the index tar. The
base is Debian's static busybox with /etc/os-release (ID=alpine), /lib/apk/db/installed,
/etc/apk/repositories (Alpine's CDN, which tests replace with mirror=) and the key in
/etc/apk/keys. `tamper` maps a file name to the bytes the server sends instead.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import http.server
import io
import subprocess
import tarfile
import threading
import urllib.parse
from pathlib import Path

from bases import image_from_tars

KEY_NAME = "nbtest-6540e1a2.rsa.pub"
OTHER_KEY_NAME = "stranger-0badc0de.rsa.pub"
RELEASE = "v3.20"
ARCH = "x86_64"
APPLETS = ("sh", "cat", "ls", "echo", "env", "test")
HELLO = b'#!/bin/sh\n. /usr/lib/libgreet.so.2\necho "$GREETING"\ncat /usr/share/greet/data.txt\n'


def _tar(members: list[tuple[str, bytes, int]], *, cut: bool) -> bytes:
    """A tar of (name, data, mode); `cut` drops the end-of-archive blocks, as abuild-tar does."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            if mode < 0:  # a directory
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
                continue
            info.size, info.mode, info.mtime = len(data), mode, 1700000000
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if cut:
        while raw.endswith(b"\0" * 512):
            raw = raw[:-512]
    return raw


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


class Keys:
    """RSA key pairs made with openssl: the base's trusted one and a stranger's."""

    def __init__(self, directory: Path):
        self.dir = directory
        for name in (KEY_NAME, OTHER_KEY_NAME):
            priv = directory / (name + ".priv")
            subprocess.run(["openssl", "genrsa", "-out", str(priv), "2048"], check=True,
                           capture_output=True)
            subprocess.run(["openssl", "rsa", "-in", str(priv), "-pubout", "-out",
                            str(directory / name)], check=True, capture_output=True)

    def public(self, name: str = KEY_NAME) -> bytes:
        return (self.dir / name).read_bytes()

    def sign(self, data: bytes, algo: str, name: str = KEY_NAME) -> bytes:
        return subprocess.run(["openssl", "dgst", f"-{algo}", "-sign",
                               str(self.dir / (name + ".priv"))], input=data, check=True,
                              capture_output=True).stdout


def build_apk(keys: Keys, name: str, version: str, files: list[tuple[str, bytes, int]], *,
              depends: str = "", provides: str = "", scripts: dict[str, bytes] | None = None
              ) -> tuple[bytes, dict[str, str]]:
    """An .apk and its APKINDEX fields."""
    data_gz = _gz(_tar(files, cut=False))
    info = [f"pkgname = {name}", f"pkgver = {version}", "pkgdesc = a test package",
            "url = https://example.invalid/", "builddate = 1700000000", "packager = nbtest",
            f"size = {sum(len(d) for _, d, m in files if m >= 0)}", f"arch = {ARCH}",
            "origin = " + name, "license = MIT"]
    info += [f"depend = {d}" for d in depends.split()]
    info += [f"provides = {p}" for p in provides.split()]
    info.append(f"datahash = {hashlib.sha256(data_gz).hexdigest()}")
    control = [(".PKGINFO", ("\n".join(info) + "\n").encode(), 0o644)]
    control += [(k, v, 0o755) for k, v in sorted((scripts or {}).items())]
    control_gz = _gz(_tar(control, cut=True))
    sig = keys.sign(control_gz, "sha1")
    sig_gz = _gz(_tar([(f".SIGN.RSA.{KEY_NAME}", sig, 0o644)], cut=True))
    apk = sig_gz + control_gz + data_gz
    fields = {"C": "Q1" + base64.b64encode(hashlib.sha1(control_gz).digest()).decode(),
              "P": name, "V": version, "A": ARCH, "S": str(len(apk)), "I": "4096",
              "T": "a test package", "U": "https://example.invalid/", "L": "MIT",
              "o": name, "m": "nbtest <nbtest@example.invalid>", "t": "1700000000",
              "D": depends, "p": provides}
    return apk, fields


def index(keys: Keys, records: list[dict[str, str]], *, key: str = KEY_NAME,
          alter: bool = False) -> bytes:
    """APKINDEX.tar.gz over `records`, signed by `key`; `alter` changes the index after signing."""
    text = "\n".join("".join(f"{k}:{v}\n" for k, v in r.items() if v) for r in records) + "\n"
    body = _gz(_tar([("DESCRIPTION", b"nbtest " + RELEASE.encode(), 0o644),
                     ("APKINDEX", text.encode(), 0o644)], cut=False))
    sig = keys.sign(body, "sha256", key)
    if alter:
        body = _gz(_tar([("DESCRIPTION", b"nbtest", 0o644),
                         ("APKINDEX", text.replace("1.2-r0", "1.3-r0").encode(), 0o644)],
                        cut=False))
    return _gz(_tar([(f".SIGN.RSA256.{key}", sig, 0o644)], cut=True)) + body


class AlpineRepo:
    """The packages, their index, and an http server for them: `url` is the mirror root."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.keys = Keys(directory)
        self.files: dict[str, bytes] = {}
        self.tamper: dict[str, bytes] = {}
        self.requests: list[str] = []
        records = []
        for args, kwargs in _PACKAGES:
            apk, fields = build_apk(self.keys, *args, **kwargs)
            self.files[f"{args[0]}-{args[1]}.apk"] = apk
            records.append(fields)
        self.records = records
        self.files["APKINDEX.tar.gz"] = index(self.keys, records)
        # what a man in the middle could serve instead
        evil, _ = build_apk(self.keys, "hello", "1.0-r0", [("usr/bin/hello", b"#!/bin/sh\n"
                                                           b"echo owned\n", 0o755)])
        self.evil_hello = evil
        self.altered_index = index(self.keys, records, alter=True)
        self.stranger_index = index(self.keys, records, key=OTHER_KEY_NAME)
        handler = functools.partial(_Handler, self)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/alpine"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def base(self):
        """The Alpine-like base Image (one uncompressed layer, built here, no engine)."""
        tar = self.dir / "alpine-base.tar"
        if not tar.exists():
            _base_tar(tar, self.keys.public())
        return image_from_tars([tar], env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                           "/usr/bin:/sbin:/bin"], cmd=["/bin/sh"])


_PACKAGES = [
    (("hello", "1.0-r0", [("usr", b"", -1), ("usr/bin", b"", -1),
                          ("usr/bin/hello", HELLO, 0o755)]),
     {"depends": "so:libgreet.so.2 greet-data>=1.1 !hello-legacy so:libc.musl-x86_64.so.1",
      "provides": "cmd:hello=1.0-r0"}),
    (("libgreet", "2.1-r0", [("usr", b"", -1), ("usr/lib", b"", -1),
                             ("usr/lib/libgreet.so.2", b"GREETING='hello from libgreet'\n",
                              0o755)]),
     {"depends": "so:libc.musl-x86_64.so.1", "provides": "so:libgreet.so.2=2.1.0"}),
    (("greet-data", "1.0-r0", [("usr/share/greet/data.txt", b"data 1.0\n", 0o644)]), {}),
    (("greet-data", "1.1_rc1-r0", [("usr/share/greet/data.txt", b"data 1.1_rc1\n", 0o644)]),
     {}),
    (("greet-data", "1.2-r0", [("usr", b"", -1), ("usr/share", b"", -1),
                               ("usr/share/greet", b"", -1),
                               ("usr/share/greet/data.txt", b"data 1.2\n", 0o644)]),
     {"scripts": {".post-install": b"#!/bin/sh\necho greeted > /var/log/greet\n"}}),
    (("broken", "1-r0", [("etc/broken", b"x\n", 0o644)]), {"depends": "so:libmissing.so.1"}),
]


def _base_tar(out: Path, public_key: bytes) -> None:
    installed = (
        "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:musl\nV:1.2.5-r0\nA:x86_64\nS:1\nI:1\n"
        "T:the C library (stands in: the base is static busybox)\nL:MIT\no:musl\n"
        "p:so:libc.musl-x86_64.so.1=1\nF:lib\n\n"
        "C:Q1BBBBBBBBBBBBBBBBBBBBBBBBBBB=\nP:busybox\nV:1.36.1-r29\nA:x86_64\nS:1\nI:1\n"
        "T:Size optimized toolbox\nL:GPL-2.0-only\no:busybox\nD:so:libc.musl-x86_64.so.1\n"
        "p:" + " ".join(f"cmd:{a}=1.36.1-r29" for a in APPLETS) + "\nF:bin\nR:busybox\n"
        "a:0:0:755\n\n")
    files = [
        ("etc/os-release", b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\n'
                           b'PRETTY_NAME="Alpine Linux v3.20"\n', 0o644),
        ("lib/apk/db/installed", installed.encode(), 0o644),
        ("etc/apk/world", b"busybox\n", 0o644),
        ("etc/apk/arch", b"x86_64\n", 0o644),
        ("etc/apk/repositories", f"https://dl-cdn.alpinelinux.org/alpine/{RELEASE}/main\n"
                                 f"https://dl-cdn.alpinelinux.org/alpine/{RELEASE}/community\n"
                                 .encode(), 0o644),
        (f"etc/apk/keys/{KEY_NAME}", public_key, 0o644),
    ]
    with tarfile.open(out, "w") as tf:
        for d in ("bin", "etc", "etc/apk", "etc/apk/keys", "lib", "lib/apk", "lib/apk/db",
                  "usr", "usr/bin", "var", "var/log", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tf.addfile(info)
        tf.add("/bin/busybox", "bin/busybox")
        for a in APPLETS:
            info = tarfile.TarInfo(f"bin/{a}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tf.addfile(info)
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tf.addfile(info, io.BytesIO(data))


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, repo: AlpineRepo, *args, **kwargs):
        self.repo = repo
        super().__init__(*args, **kwargs)

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        self.repo.requests.append(path)
        prefix = f"/alpine/{RELEASE}/"
        parts = path[len(prefix):].split("/") if path.startswith(prefix) else []
        # main has the packages; community is an empty, signed repository
        name = parts[2] if len(parts) == 3 and parts[1] == ARCH else None
        if parts[:1] == ["community"] and name == "APKINDEX.tar.gz":
            data = index(self.repo.keys, [])
        elif parts[:1] == ["main"] and name in self.repo.files:
            data = self.repo.tamper.get(name, self.repo.files[name])
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
