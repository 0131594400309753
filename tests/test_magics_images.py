"""The look-inside magics on real images built by the engine: same tables as the Python API."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from IPython.core.error import UsageError
from pandas.testing import assert_frame_equal

import nbimages
from conftest import docker_build
from nbimages.errors import ImageNotFound, InvalidImage

LAYER_COLUMNS = ["index", "digest", "diff_id", "size", "compressed_size", "created_by",
                 "files_added", "files_modified", "files_deleted", "wasted_bytes"]


@pytest.fixture(scope="session")
def waste_image(docker_client, busybox_image, tmp_path_factory) -> str:
    """An image that adds, overwrites and deletes files: `nbtest/skin-waste:1`."""
    ctx = tmp_path_factory.mktemp("skin-waste")
    (ctx / "big.bin").write_bytes(bytes(range(256)) * 400)  # 102,400 bytes
    docker_build(docker_client, ctx, "nbtest/skin-waste:1",
                 f"FROM {busybox_image}\n"
                 "COPY big.bin /data/big.bin\n"
                 "RUN echo v1 > /etc/app.conf && mkdir -p /opt/x && echo a > /opt/x/a\n"
                 "RUN rm /data/big.bin && echo version-two > /etc/app.conf\n")
    return "nbtest/skin-waste:1"


@pytest.fixture(scope="session")
def waste_archive(waste_image, busybox_image, tmp_path_factory) -> dict[str, str]:
    """`docker save` tars of the waste image and of its busybox base, as source strings."""
    d = tmp_path_factory.mktemp("skin-archives")
    subprocess.run(["docker", "save", "-o", str(d / "waste.tar"), waste_image], check=True)
    subprocess.run(["docker", "save", "-o", str(d / "base.tar"), busybox_image], check=True)
    return {"image": f"docker-archive:{d / 'waste.tar'}", "base": f"docker-archive:{d / 'base.tar'}",
            "tar": str(d / "waste.tar")}


def test_layers_magic_equals_the_api_table(ip, waste_archive):
    df = ip.run_line_magic("image", f"layers {waste_archive['image']}")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns[:len(LAYER_COLUMNS)]) == LAYER_COLUMNS
    assert len(df) == 5  # busybox's two layers, then COPY and two RUNs
    assert_frame_equal(df, nbimages.inspect(waste_archive["image"]).layers)


def test_engine_and_archive_sources_give_the_same_layers(ip, waste_archive, waste_image):
    from_archive = ip.run_line_magic("image", f"layers {waste_archive['image']}")
    from_engine = ip.run_line_magic("image", f"layers docker-daemon:{waste_image}")
    cols = ["diff_id", "size", "files_added", "files_modified", "files_deleted", "wasted_bytes"]
    assert_frame_equal(from_archive[cols], from_engine[cols])


def test_files_magic_of_one_layer_shows_the_deletion(ip, waste_archive):
    df = ip.run_line_magic("image", f"files {waste_archive['image']} --layer 4")
    assert set(df.layer) == {4}
    row = df[df.path == "/data/big.bin"].iloc[0]
    assert row.change == "deleted"
    final = ip.run_line_magic("image", f"files {waste_archive['image']} --final")
    assert "/data/big.bin" not in set(final.path) and "/etc/app.conf" in set(final.path)


def test_waste_magic_lists_the_overwritten_and_deleted_paths(ip, waste_archive):
    df = ip.run_line_magic("image", f"waste {waste_archive['image']}")
    paths = set(df.path)
    assert {"/data/big.bin", "/etc/app.conf"} <= paths
    assert df[df.path == "/data/big.bin"].wasted_bytes.item() == 102_400


def test_sizes_magic_depth_reaches_the_api(ip, waste_archive):
    df = ip.run_line_magic("image", f"sizes {waste_archive['image']} --depth 1")
    assert_frame_equal(df, nbimages.inspect(waste_archive["image"]).sizes(depth=1))
    assert "/bin" in set(df.path)


def test_diff_magic_names_what_the_image_added(ip, waste_archive):
    df = ip.run_line_magic("image", f"diff {waste_archive['base']} {waste_archive['image']}")
    added = set(df[df.change == "added"].path)
    assert {"/etc/app.conf", "/opt/x/a"} <= added
    assert "/data/big.bin" not in set(df.path)


def test_inspect_magic_returns_the_inspection_and_variables_reuse_it(ip, waste_archive):
    insp = ip.run_line_magic("image", f"inspect {waste_archive['image']}")
    assert isinstance(insp, nbimages.Inspection)
    assert "<table" in insp._repr_html_()
    ip.user_ns["insp"] = insp
    assert ip.run_line_magic("image", "waste insp") is not None
    assert_frame_equal(ip.run_line_magic("image", "layers insp"), insp.layers)


def test_an_image_variable_is_a_source(ip, waste_archive):
    ip.user_ns["img"] = nbimages.open_image(waste_archive["image"])
    assert len(ip.run_line_magic("image", "layers img")) == 5


def test_history_and_packages_magics_return_dataframes(ip, waste_archive):
    history = ip.run_line_magic("image", f"history {waste_archive['image']}")
    assert history.empty_layer.any()  # CMD made no layer
    packages = ip.run_line_magic("image", f"packages {waste_archive['image']}")
    assert isinstance(packages, pd.DataFrame)


def test_missing_archive_is_one_red_paragraph(ip, capsys, tmp_path):
    result = ip.run_cell(f"%image layers docker-archive:{tmp_path}/missing.tar")
    assert isinstance(result.error_in_exec, ImageNotFound)
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert text.startswith("\x1b[31mImageNotFound: ") and "Traceback" not in text
    assert len(text.splitlines()) == 1


def test_a_tar_that_is_not_an_image_is_one_red_paragraph(ip, capsys, tmp_path):
    import tarfile
    bad = tmp_path / "notimage.tar"
    (tmp_path / "hello.txt").write_text("hi")
    with tarfile.open(bad, "w") as t:
        t.add(tmp_path / "hello.txt", "hello.txt")
    result = ip.run_cell(f"%image layers docker-archive:{bad}")
    assert isinstance(result.error_in_exec, InvalidImage)
    assert "Traceback" not in capsys.readouterr().out


def test_files_magic_bad_layer_option_is_one_usage_line(ip, waste_archive):
    with pytest.raises(UsageError) as e:
        ip.run_line_magic("image", f"files {waste_archive['image']} --layer")
    assert "\n" not in str(e.value) and "--layer" in str(e.value)


def test_explore_magic_returns_the_explorer_with_a_static_fallback(ip, waste_archive):
    ex = ip.run_line_magic("image", f"explore {waste_archive['image']} --diff {waste_archive['base']}")
    assert type(ex).__name__ == "Explorer"
    html = ex.to_html()
    assert "nbimages-layer-row" in html and "nbimages-diff-row" in html
