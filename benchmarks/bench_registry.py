"""Pull and push one large image with nbimages, docker and skopeo against a loopback registry.

    .venv/bin/python benchmarks/bench_registry.py [--size-mb 520] [--layers 12] [--keep]

Builds (once, cached in the engine) an image of N layers on a static busybox base: half of
them random bytes (incompressible), half base64 text (compressible), ~size-mb in total. A
dedicated `docker-registry` with its own storage runs on a free 127.0.0.1 port; it is wiped and
restarted before every push so blob mounts and HEAD hits cannot make a push free.

Timed, in one run:
  push  docker push (engine -> registry, compresses)      | nbimages push (store -> registry)
        skopeo copy oci:DIR -> docker://                   |
  pull  docker pull (registry -> engine, with extraction) | nbimages pull (registry -> store)
        skopeo copy docker:// -> oci:DIR                   |
Rates are MB/s of compressed bytes moved (the image's blobs). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from registry_servers import Distribution  # noqa: E402

BASE_TAG = "nbbench/busybox:1"


def sh(*cmd: str, quiet: bool = True) -> str:
    out = subprocess.run(cmd, capture_output=quiet, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {(out.stderr or '')[-2000:]}")
    return out.stdout if quiet else ""


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build_image(tag: str, size_mb: int, layers: int) -> None:
    """The benchmark image, built by the engine with no network (cached between runs)."""
    ctx = Path(tempfile.mkdtemp(prefix="nbbench-"))
    try:
        shutil.copy("/bin/busybox", ctx / "busybox")
        (ctx / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
        sh("docker", "build", "-q", "--network", "none", "-t", BASE_TAG, str(ctx))
        per = max(1, size_mb // layers)
        steps = []
        for i in range(layers):
            if i % 2 == 0:
                steps.append(f"RUN head -c {per << 20} /dev/urandom > /random-{i}.bin")
            else:
                steps.append(f"RUN head -c {(per << 20) * 3 // 4} /dev/urandom | base64 > /text-{i}.txt")
        (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\n" + "\n".join(steps) + "\n")
        sh("docker", "build", "-q", "--network", "none", "-t", tag, str(ctx))
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=540)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nbbench-registry-", dir="/var/tmp"))
    os.environ["NBIMAGES_HOME"] = str(work / "nbhome")
    os.environ["NBIMAGES_PROGRESS"] = "0"
    import nbimages
    from nbimages.store import Store

    local_tag = f"nbbench/large:{args.size_mb}x{args.layers}"
    print(f"building {local_tag} with the engine (cached after the first run)...", file=sys.stderr)
    build_image(local_tag, args.size_mb, args.layers)

    reg_root = work / "registry"
    results: dict[str, float] = {}
    reg = None

    def fresh_registry():
        nonlocal reg
        if reg is not None:
            reg.__exit__(None, None, None)
        shutil.rmtree(reg_root, ignore_errors=True)
        reg = Distribution(reg_root).__enter__()
        return reg.address

    try:
        addr = fresh_registry()
        docker_ref = f"{addr}/bench/docker:1"
        sh("docker", "tag", local_tag, docker_ref)
        results["push docker"] = timed(lambda: sh("docker", "push", docker_ref))

        # The image as the registry holds it (the engine's gzip), read once to size it.
        from nbimages.sources.remote import open_remote
        remote = open_remote(docker_ref)
        size = sum(l.size for l in remote.layers) + remote.manifest.config.size
        uncompressed = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", local_tag).strip())
        print(f"image: {len(remote.layers)} layers, {uncompressed / 1e6:.0f} MB uncompressed, "
              f"{size / 1e6:.0f} MB compressed", file=sys.stderr)

        sh("sync")
        results["pull nbimages"] = timed(lambda: nbimages.pull(docker_ref, progress=False))
        oci_dir = work / "oci"
        results["pull skopeo"] = timed(lambda: sh(
            "skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{docker_ref}", f"oci:{oci_dir}:bench"))
        sh("docker", "rmi", "-f", docker_ref, local_tag)
        results["pull docker"] = timed(lambda: sh("docker", "pull", "-q", docker_ref))
        sh("docker", "tag", docker_ref, local_tag)
        sh("docker", "rmi", docker_ref)

        image = Store().get(docker_ref)
        addr = fresh_registry()
        results["push nbimages"] = timed(lambda: nbimages.push(image, f"{addr}/bench/nb:1", progress=False))
        addr = fresh_registry()
        results["push skopeo"] = timed(lambda: sh(
            "skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{oci_dir}:bench",
            f"docker://{addr}/bench/skopeo:1"))
    finally:
        if reg is not None:
            reg.__exit__(None, None, None)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    print(f"\nImage: {len(remote.layers)} layers, {uncompressed / 1e6:.0f} MB uncompressed, "
          f"{mb:.0f} MB compressed; loopback registry (distribution 2.8), fresh storage per push.\n")
    print("| operation | tool | seconds | MB/s | nbimages speed-up |")
    print("|---|---|---:|---:|---:|")
    for op in ("pull", "push"):
        ours = results[f"{op} nbimages"]
        for tool in ("nbimages", "skopeo", "docker"):
            t = results[f"{op} {tool}"]
            print(f"| {op} | {tool} | {t:.2f} | {mb / t:.0f} | {t / ours:.2f}x |")


if __name__ == "__main__":
    main()
