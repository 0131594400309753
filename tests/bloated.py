"""A realistic bloated Debian + Python image, built with the engine, and its fixed twin (issue 14).

`Dockerfile` below is what a user writes on a first try: apt with recommends and no cleanup,
a build artefact removed in a later RUN, pip with its cache, a file written twice, a copy of a
file, a data file baked in, and `.pyc` files of another Python. `FIXED` is the same five RUN
steps written the way `inspection.advice()` says: the tests compare, layer by layer, what the
advice says each change saves with what the engine's fixed build really saves.

Both are built once per machine (the engine's tag carries a hash of the text as a label, so
later sessions reuse them) from the Python base pushed to the loopback registry; pip reads
wheels served on 127.0.0.1, apt reaches Debian's mirror from a `--network host` build.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from bases import WHEELHOUSE, download_wheels

BLOATED_TAG = "nbtest14/bloated:1"
FIXED_TAG = "nbtest14/bloated-fixed:1"
NETWORKX = "networkx==3.4.2"
SITE = "/usr/local/lib/python3.11/dist-packages"

_PIP = ("python3 -c \"import urllib.request as u; u.urlretrieve('{wheels}{pip}', '/tmp/{pip}')\" "
        "&& python3 /tmp/{pip}/pip install --break-system-packages --index-url {index}simple/ "
        "{nocache}" + NETWORKX + " && rm /tmp/{pip}")

BLOATED = [
    "apt-get update && apt-get install -y curl",
    "mkdir -p /opt/build /opt/data && head -c 8000000 /dev/urandom > /opt/build/objects.tar "
    "&& head -c 3000000 /dev/urandom > /opt/data/model.bin",
    "rm -rf /opt/build",
    _PIP,
    "head -c 3000000 /dev/urandom > /opt/data/model.bin "
    "&& cp /opt/data/model.bin /opt/data/model-copy.bin "
    "&& head -c 25000000 /dev/urandom > /opt/data/huge.bin "
    "&& mkdir -p /app/__pycache__ && echo 'print(1)' > /app/util.py "
    "&& head -c 40000 /dev/urandom > /app/__pycache__/util.cpython-39.pyc",
]

FIXED = [
    "apt-get update && apt-get install -y --no-install-recommends curl && apt-get clean "
    "&& rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*",
    "mkdir -p /opt/build /opt/data && head -c 8000000 /dev/urandom > /opt/build/objects.tar "
    "&& rm -rf /opt/build",
    "rm -rf /opt/build",
    _PIP + " && find " + SITE + "/networkx -depth -type d -name tests -exec rm -rf {{}} +",
    "head -c 3000000 /dev/urandom > /opt/data/model.bin "
    "&& ln /opt/data/model.bin /opt/data/model-copy.bin "
    "&& mkdir -p /app && echo 'print(1)' > /app/util.py",
]


def dockerfile(base: str, runs: list[str], index: str, pip_wheel: str, fixed: bool) -> str:
    lines = [f"FROM {base}"]
    for run in runs:
        lines.append("RUN " + run.format(wheels=index, pip=pip_wheel, index=index,
                                         nocache="--no-cache-dir " if fixed else ""))
    return "\n".join(lines) + "\n"


def _wheels() -> str:
    download_wheels(["pip", NETWORKX])
    return sorted(p.name for p in WHEELHOUSE.glob("pip-*.whl"))[-1]


def _build(client, tag: str, text: str, stamp: str) -> str:
    try:
        img = client.images.get(tag)
        if (img.labels or {}).get("nbtest14.recipe") == stamp:
            return tag
    except Exception:  # noqa: BLE001 - not there yet
        pass
    text += f'LABEL nbtest14.recipe="{stamp}"\n'
    data = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, network_mode="host",
                        rm=True, forcerm=True, timeout=1800)
    return tag


def build_bloated(client, base: str, wheel_index) -> tuple[str, str]:
    """(bloated tag, fixed tag) in the engine, built unless this recipe is there already."""
    pip_wheel = _wheels()
    index = wheel_index.url[:-len("simple/")]
    tags = []
    for tag, runs, fixed in ((BLOATED_TAG, BLOATED, False), (FIXED_TAG, FIXED, True)):
        # the recipe's identity leaves out the index's port, which changes every session
        stamp = hashlib.sha256(dockerfile(base, runs, "INDEX/", pip_wheel, fixed).encode()
                               ).hexdigest()[:16]
        tags.append(_build(client, tag, dockerfile(base, runs, index, pip_wheel, fixed), stamp))
    return tags[0], tags[1]


# The first RUN with one change each: what each apt finding alone saves.
APT_ONLY = {"apt-lists": BLOATED[0] + " && rm -rf /var/lib/apt/lists/*",
            "apt-cache": BLOATED[0] + " && apt-get clean",
            "recommends": BLOATED[0].replace("install -y", "install -y --no-install-recommends")}


def build_apt_variants(client, base: str) -> dict[str, str]:
    """kind -> tag of FROM base + the first RUN with only that finding's change."""
    out = {}
    for kind, run in APT_ONLY.items():
        text = dockerfile(base, [run], "", "", False)
        stamp = hashlib.sha256(text.encode()).hexdigest()[:16]
        out[kind] = _build(client, f"nbtest14/bloated-{kind}:1", text, stamp)
    return out


_ARCHIVES: dict[str, tuple[str, str]] = {}


def bloated_archives(client, base: str, wheel_index, tmp: Path) -> tuple[str, str]:
    """(bloated, fixed) as `docker save` tars: built once per machine, saved once per session
    (the test modules that share them each hold the fixture; this cache makes it one save)."""
    if base not in _ARCHIVES:
        out = []
        for tag in build_bloated(client, base, wheel_index):
            path = tmp / (tag.replace("/", "_").replace(":", "_") + ".tar")
            subprocess.run(["docker", "save", "-o", str(path), tag], check=True)
            out.append(str(path))
        _ARCHIVES[base] = (out[0], out[1])
    return _ARCHIVES[base]


@pytest.fixture(scope="session")
def bloated(docker_client, python_base_in_registry, wheel_index, tmp_path_factory):
    """(bloated, fixed) as docker-archive paths (test modules import this fixture)."""
    return bloated_archives(docker_client, python_base_in_registry, wheel_index,
                            tmp_path_factory.mktemp("bloated14"))
