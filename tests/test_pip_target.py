"""Finding the image's Python, install scheme and wheel platform from its layers alone."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from bases import image_from_tars, python_base_oci
from nbimages.builder.target import find_target, manylinux_tags, musllinux_tags
from nbimages.errors import BuildError

GLIBC_BANNER = (b"\x00GNU C Library (Debian GLIBC 2.36-9+deb12u10) stable release "
                b"version 2.36.\n\x00")


def layer(path: Path, entries: list[tuple]) -> Path:
    """A layer tar from (name, kind, data-or-link) tuples; kind: file, dir, symlink."""
    with tarfile.open(path, "w") as tf:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, value
                tf.addfile(info)
            else:
                data = value if isinstance(value, bytes) else value.encode()
                info.size, info.mode = len(data), 0o755
                tf.addfile(info, io.BytesIO(data))
    return path


def python_org_layout(version: str = "3.12") -> list[tuple]:
    """What python:X-slim has: CPython in /usr/local on Debian's glibc."""
    return [
        ("lib/x86_64-linux-gnu/libc.so.6", "file", b"\x7fELF" + GLIBC_BANNER),
        ("usr/local/bin/python" + version, "file", b"\x7fELF"),
        ("usr/local/bin/python3", "symlink", "python" + version),
        (f"usr/local/lib/python{version}/os.py", "file", "# os"),
        (f"usr/local/lib/python{version}/site.py", "file", "# site-packages only"),
        (f"usr/local/lib/python{version}/site-packages/README.txt", "file", "x"),
    ]


def debian_python(version: str = "3.11") -> list[tuple]:
    return [
        ("usr/bin/python" + version, "file", b"\x7fELF"),
        ("usr/bin/python3", "symlink", "python" + version),
        (f"usr/lib/python{version}/os.py", "file", "# os"),
        (f"usr/lib/python{version}/site.py", "file", "dist-packages, Debian addons"),
    ]


def test_python_org_image_installs_into_usr_local_site_packages(tmp_path):
    img = image_from_tars([layer(tmp_path / "l.tar", python_org_layout("3.12"))],
                          env=["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.12.4"])
    t = find_target(img)
    assert (t.python_version, t.abi, t.python_full_version) == ("3.12", "cp312", "3.12.4")
    assert t.interpreter_path == "/usr/local/bin/python3"
    assert t.purelib == t.platlib == "/usr/local/lib/python3.12/site-packages"
    assert t.scripts_dir == "/usr/local/bin"
    assert t.libc == "glibc 2.36"
    assert t.platform_tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux2014_x86_64" in t.platform_tags and t.platform_tags[-1] == "linux_x86_64"


def test_old_glibc_version_comes_from_the_library_file_name(tmp_path):
    entries = [e for e in python_org_layout("3.9") if "libc.so.6" not in e[0]]
    entries += [("lib/x86_64-linux-gnu/libc-2.28.so", "file", b"\x7fELF"),
                ("lib/x86_64-linux-gnu/libc.so.6", "symlink", "libc-2.28.so")]
    t = find_target(image_from_tars([layer(tmp_path / "l.tar", entries)]))
    assert t.libc == "glibc 2.28" and t.platform_tags[0] == "manylinux_2_28_x86_64"
    assert "manylinux_2_36_x86_64" not in t.platform_tags


def test_musl_arm64_image_gets_musllinux_aarch64_tags(tmp_path):
    entries = [("lib/ld-musl-aarch64.so.1", "file", b"\x7fELF"),
               ("lib/apk/db/installed", "file", "P:musl\nV:1.2.4-r2\n\nP:python3\nV:3.11.9-r0\n"),
               ("usr/bin/python3.11", "file", b"\x7fELF"),
               ("usr/bin/python3", "symlink", "python3.11"),
               ("usr/lib/python3.11/os.py", "file", "# os"),
               ("usr/lib/python3.11/site.py", "file", "# plain")]
    t = find_target(image_from_tars([layer(tmp_path / "l.tar", entries)], architecture="arm64",
                                    variant="v8"))
    assert t.machine == "aarch64" and t.libc == "musl 1.2"
    assert t.platform_tags == ("musllinux_1_2_aarch64", "musllinux_1_1_aarch64",
                               "musllinux_1_0_aarch64", "linux_aarch64")
    assert t.purelib == "/usr/lib/python3.11/site-packages"
    assert t.python_full_version == "3.11.9"
    assert t.marker_environment()["platform_machine"] == "aarch64"


def test_debian_python_installs_into_local_dist_packages(tmp_path):
    entries = debian_python() + [("usr/lib/x86_64-linux-gnu/libc.so.6", "file", GLIBC_BANNER),
                                 ("lib", "symlink", "usr/lib")]
    t = find_target(image_from_tars([layer(tmp_path / "l.tar", entries)]))
    assert t.interpreter_path == "/usr/bin/python3"
    assert t.purelib == "/usr/local/lib/python3.11/dist-packages"
    assert t.scripts_dir == "/usr/local/bin"


def test_whiteout_in_an_upper_layer_hides_the_lower_interpreter(tmp_path):
    lower = layer(tmp_path / "1.tar", python_org_layout("3.12") + debian_python("3.11"))
    upper = layer(tmp_path / "2.tar", [("usr/local/bin/.wh.python3", "file", b""),
                                       ("usr/local/bin/.wh.python3.12", "file", b"")])
    t = find_target(image_from_tars([lower, upper], env=["PATH=/usr/local/bin:/usr/bin"]))
    assert t.interpreter_path == "/usr/bin/python3" and t.python_version == "3.11"


def test_opaque_directory_hides_the_lower_libc(tmp_path):
    lower = layer(tmp_path / "1.tar", python_org_layout("3.12"))
    upper = layer(tmp_path / "2.tar", [("lib/x86_64-linux-gnu/.wh..wh..opq", "file", b""),
                                       ("lib/x86_64-linux-gnu/libc-2.31.so", "file", b"x"),
                                       ("lib/x86_64-linux-gnu/libc.so.6", "symlink",
                                        "libc-2.31.so")])
    assert find_target(image_from_tars([lower, upper])).libc == "glibc 2.31"


def test_the_path_in_the_config_decides_between_two_pythons(tmp_path):
    tar = layer(tmp_path / "l.tar", python_org_layout("3.12") + debian_python("3.11"))
    assert find_target(image_from_tars([tar], env=["PATH=/usr/bin:/usr/local/bin"])) \
        .python_version == "3.11"
    assert find_target(image_from_tars([tar], env=["PATH=/usr/local/bin:/usr/bin"])) \
        .python_version == "3.12"


def test_image_without_python_is_a_build_error_naming_python3(tmp_path):
    tar = layer(tmp_path / "l.tar", [("bin/busybox", "file", b"\x7fELF")])
    with pytest.raises(BuildError, match="no python3 on its PATH"):
        find_target(image_from_tars([tar]))


def test_unknown_architecture_is_a_build_error(tmp_path):
    tar = layer(tmp_path / "l.tar", python_org_layout())
    with pytest.raises(BuildError, match="architecture 'mips64le'"):
        find_target(image_from_tars([tar], architecture="mips64le"))


def test_tag_lists_follow_pep600_and_pep656():
    assert manylinux_tags(17, "aarch64") == ["manylinux_2_17_aarch64", "manylinux2014_aarch64",
                                             "linux_aarch64"]
    assert manylinux_tags(5, "x86_64")[-3:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64",
                                               "linux_x86_64"]
    assert musllinux_tags(1, "x86_64") == ["musllinux_1_1_x86_64", "musllinux_1_0_x86_64",
                                           "linux_x86_64"]


def test_debootstrap_base_is_debian_python_311_on_glibc_236():
    t = find_target(python_base_oci())
    assert t.interpreter_path == "/usr/bin/python3"
    assert t.python_version == "3.11" and t.python_full_version.startswith("3.11.")
    assert t.purelib == "/usr/local/lib/python3.11/dist-packages"
    assert t.libc == "glibc 2.36" and t.platform_tags[0] == "manylinux_2_36_x86_64"
