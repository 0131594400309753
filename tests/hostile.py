"""Hostile images written by the tests themselves: layer tars, configs, OCI layouts and
docker-archives assembled byte by byte, so each attack is exactly the one described."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes], *, fmt: int = tarfile.PAX_FORMAT, links: dict | None = None,
          hardlinks: dict | None = None) -> bytes:
    """An uncompressed layer tar: regular files (name -> bytes), symlinks and hard links."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
        for name, target in (hardlinks or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.LNKTYPE
            ti.linkname = target
            tf.addfile(ti)
    return out.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def config(diff_ids: list[str], *, arch: str = "amd64", os_: str = "linux") -> bytes:
    return json.dumps({
        "architecture": arch, "os": os_, "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"layer {i}"} for i in range(len(diff_ids))],
    }, separators=(",", ":")).encode()


def manifest(config_bytes: bytes, blobs: list[tuple[bytes, str]], *,
             sizes: list[int] | None = None) -> bytes:
    """An OCI manifest for (blob bytes, media type) layers; `sizes` may lie about them."""
    layers = [{"mediaType": mtype, "digest": sha256(blob),
               "size": sizes[i] if sizes else len(blob)} for i, (blob, mtype) in enumerate(blobs)]
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config_bytes),
                   "size": len(config_bytes)},
        "layers": layers,
    }, separators=(",", ":")).encode()


def index(manifest_bytes: bytes, tag: str | None = "latest") -> bytes:
    desc = {"mediaType": OCI_MANIFEST, "digest": sha256(manifest_bytes),
            "size": len(manifest_bytes)}
    if tag:
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]},
                      separators=(",", ":")).encode()


def oci_layout(directory: Path, layers: list[tuple[bytes, str]], *,
               diff_ids: list[str] | None = None, sizes: list[int] | None = None,
               arch: str = "amd64") -> Path:
    """An OCI layout directory holding one image; diff_ids default to the true ones."""
    if diff_ids is None:
        diff_ids = [sha256(_inflate(blob)) for blob, _ in layers]
    cfg = config(diff_ids, arch=arch)
    man = manifest(cfg, layers, sizes=sizes)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for data in [cfg, man] + [blob for blob, _ in layers]:
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_bytes(index(man))
    return directory


def _inflate(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


def member(name: str, data: bytes) -> bytes:
    """One tar member (ustar header + padded data) as raw bytes."""
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    return ti.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def global_header(records: dict[str, str]) -> bytes:
    """A PAX global extended header ('g'), which Python's tarfile applies to the members after
    it and Go's archive/tar (docker load) ignores."""
    return tarfile.TarInfo._create_pax_generic_header(records, tarfile.XGLTYPE, "utf-8")


def raw_tar(path: Path, parts: list[bytes]) -> Path:
    """A tar file made of raw member blocks, closed by the two end-of-archive blocks."""
    path.write_bytes(b"".join(parts) + bytes(1024))
    return path


def two_reading_archive(path: Path, benign: bytes, evil: bytes) -> Path:
    """The first attack of issue 17: `000/layer.tar` benign, a PAX global header renaming the
    next member for Python only, then `000/layer.tar` evil; the config names the evil layer."""
    cfg = config([sha256(evil)])
    cfg_name = sha256(cfg).split(":")[1] + ".json"
    man = json.dumps([{"Config": cfg_name, "RepoTags": ["nbtest-hostile17/global:1"],
                       "Layers": ["000/layer.tar"]}]).encode()
    return raw_tar(path, [member(cfg_name, cfg), member("000/layer.tar", benign),
                          global_header({"path": "zzz-ignored-by-go"}),
                          member("000/layer.tar", evil), member("manifest.json", man)])


def disagreeing_archive(path: Path, benign: bytes, evil: bytes) -> Path:
    """The second attack: a Docker-25-style archive whose index.json names a benign layer blob
    and whose manifest.json (what Docker 20.10 loads) names an evil one, under one config
    whose diff_id is the evil layer's."""
    cfg = config([sha256(evil)])
    man = manifest(cfg, [(benign, LAYER_TAR)])
    legacy = json.dumps([{"Config": "blobs/sha256/" + sha256(cfg).split(":")[1],
                          "RepoTags": ["nbtest-hostile17/disagree:1"],
                          "Layers": ["blobs/sha256/" + sha256(evil).split(":")[1]]}]).encode()
    parts = [member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
             member("index.json", index(man)), member("manifest.json", legacy)]
    for data in (cfg, man, benign, evil):
        parts.append(member("blobs/sha256/" + sha256(data).split(":")[1], data))
    return raw_tar(path, parts)
