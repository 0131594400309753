"""%image run / ps / stop / logs / images / tag / rm / load with the real Docker engine."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError


def test_run_streams_output_and_returns_the_exit_code(ip, busybox_image, capfd):
    code = ip.run_line_magic("image", f"run {busybox_image} sh -c 'echo hello from magic; exit 3'")
    assert code == 3
    assert "hello from magic" in capfd.readouterr().out  # streamed into the cell
    assert "hello from magic" in code.output


def test_one_quoted_word_runs_in_the_shell(ip, busybox_image):
    code = ip.run_line_magic("image", f'run {busybox_image} "echo a && echo b"')
    assert code == 0
    assert code.output.split() == ["a", "b"]


def test_cell_body_is_a_shell_script(ip, busybox_image):
    code = ip.run_cell_magic("image", f"run -e WHO=cell {busybox_image}", "echo hi $WHO\nexit 0\n")
    assert code == 0 and "hi cell" in code.output


def test_command_both_in_line_and_cell_is_a_usage_error(ip, busybox_image):
    with pytest.raises(UsageError) as e:
        ip.run_cell_magic("image", f"run {busybox_image} echo x", "echo y")
    assert "not both" in str(e.value)


def test_bad_env_is_a_usage_error(ip, busybox_image):
    with pytest.raises(UsageError) as e:
        ip.run_line_magic("image", f"run -e NOVALUE {busybox_image} true")
    assert "KEY=VALUE" in str(e.value)


def test_detached_container_shows_in_ps_logs_and_stops(ip, busybox_image):
    handle = ip.run_line_magic("image", f"run -d --name nbmagic-bg {busybox_image} "
                                        "sh -c 'echo started; sleep 60'")
    try:
        assert handle.name == "nbmagic-bg"
        ps = ip.run_line_magic("image", "ps")
        assert isinstance(ps, pd.DataFrame) and "nbmagic-bg" in ps.name.tolist()
        import time
        for _ in range(50):
            if "started" in ip.run_line_magic("image", "logs nbmagic-bg"):
                break
            time.sleep(0.1)
        assert "started" in ip.run_line_magic("image", "logs nbmagic-bg --tail 5")
    finally:
        stopped = ip.run_line_magic("image", "stop nbmagic-bg")
    assert stopped == ["nbmagic-bg"]


def test_stop_without_a_name_is_a_usage_error(ip):
    with pytest.raises(UsageError):
        ip.run_line_magic("image", "stop")


def test_images_tag_and_rm_in_the_store(ip, busybox_image):
    ip.run_line_magic("image", f"copy-image docker-daemon:{busybox_image} store:magic/bb:1 -q")
    ip.run_line_magic("image", "tag magic/bb:1 magic/bb:2 --where store")
    df = ip.run_line_magic("image", "images")
    store = df[df["where"] == "store"]
    assert {"1", "2"} <= set(store[store.repository.str.endswith("magic/bb")].tag)
    assert ip.run_line_magic("image", "rm magic/bb:2 --where store") == {"magic/bb:2": ["store"]}
    df = ip.run_line_magic("image", "images")
    assert "2" not in set(df[(df["where"] == "store") & df.repository.str.endswith("magic/bb")].tag)


def test_load_puts_a_docker_save_tar_in_the_store(ip, busybox_image, tmp_path):
    ip.run_line_magic("image", f"save docker-daemon:{busybox_image} {tmp_path}/bb.tar --tag magic/loaded:1")
    names = ip.run_line_magic("image", f"load {tmp_path}/bb.tar --where store")
    assert any("magic/loaded:1" in n for n in names)
