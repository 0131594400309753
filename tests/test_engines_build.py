"""Building with the Docker engine: RUN steps, one layer per step, the log streamed as it comes,
and a failing step explained by its command, exit code and last lines of output."""

from __future__ import annotations

import uuid

import pytest

import nbimages
from nbimages.engines.docker import BuildLog
from nbimages.errors import BuildError

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def eng(docker_client):
    return nbimages.engine("docker")


def _layers(docker_client, ref: str) -> list[str]:
    return docker_client.images.get(ref).attrs["RootFS"]["Layers"]


def test_dockerfile_with_run_steps_builds_one_layer_per_step(eng, busybox_image, docker_client,
                                                              tmp_path, capsys):
    tag = f"nbtest/engine-build:{uuid.uuid4().hex[:8]}"
    (tmp_path / "data.txt").write_text("context file\n")
    dockerfile = (f"FROM {busybox_image}\n"
                  f"RUN echo building-{tag} && echo a > /a\n"
                  "ENV GREETING=hello\n"
                  "COPY data.txt /data.txt\n"
                  "RUN echo b > /b\n"
                  'CMD ["sh", "-c", "cat /a /b /data.txt; echo $GREETING"]\n')
    built = nbimages.engines.build(dockerfile, tag, context=tmp_path, engine=eng)
    out = capsys.readouterr().out
    assert "Step 2/6 : RUN echo building" in out and f"building-{tag}" in out
    base = _layers(docker_client, busybox_image)
    layers = _layers(docker_client, tag)
    assert layers[:len(base)] == base and len(layers) == len(base) + 3  # RUN, COPY, RUN
    assert built.id == docker_client.images.get(tag).id and tag in built.tags
    result = nbimages.run(tag, engine=eng, stream=False)
    assert result == 0 and result.output.split() == ["a", "b", "context", "file", "hello"]
    docker_client.images.remove(tag)


def test_a_dockerfile_path_builds_with_its_directory_as_context(eng, busybox_image, docker_client,
                                                                tmp_path):
    tag = f"nbtest/engine-build-path:{uuid.uuid4().hex[:8]}"
    (tmp_path / "hello.txt").write_text("hi\n")
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY hello.txt /hello.txt\n")
    nbimages.engines.build(tmp_path / "Dockerfile", tag, engine=eng, stream=False)
    assert len(_layers(docker_client, tag)) == len(_layers(docker_client, busybox_image)) + 1
    docker_client.images.remove(tag)


def test_failing_run_step_reports_command_exit_code_and_output_tail(eng, busybox_image, capsys):
    dockerfile = (f"FROM {busybox_image}\n"
                  "RUN echo fine\n"
                  "RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo line-$i; done; "
                  "echo 'compiler says no' >&2; exit 7\n"
                  "RUN echo never\n")
    with pytest.raises(BuildError) as info:
        nbimages.engines.build(dockerfile, engine=eng)
    msg = str(info.value)
    assert msg.startswith("step 3/4 `RUN for i in 1 2 3")
    assert "failed with exit code 7" in msg
    assert "compiler says no" in msg and "line-20" in msg
    assert "line-1\n" not in msg  # only the last lines
    assert "never" not in msg and "Running in" not in msg and "\x1b" not in msg
    assert "line-1" in capsys.readouterr().out  # the whole log was streamed


def test_failing_non_run_step_says_what_the_engine_said(eng, busybox_image, tmp_path):
    with pytest.raises(BuildError, match=r"step 2/2 `COPY missing.txt /x` failed: .*missing.txt"):
        nbimages.engines.build(f"FROM {busybox_image}\nCOPY missing.txt /x\n", context=tmp_path,
                               engine=eng, stream=False)


def test_build_log_parser_keeps_only_the_failing_steps_output():
    log = BuildLog(stream=False, tail=3)
    events = [{"stream": "Step 1/2 : FROM x\n"}, {"stream": " ---> abc\n"},
              {"stream": "Step 2/2 : RUN make\n"}, {"stream": " ---> Running in 123\n"},
              {"stream": "a\nb\n"}, {"stream": "c\nd\n"},
              {"error": "The command '/bin/sh -c make' returned a non-zero code: 2",
               "errorDetail": {"code": 2, "message": "..."}}]
    with pytest.raises(BuildError) as info:
        log.follow(events)
    assert str(info.value).startswith("step 2/2 `RUN make` failed with exit code 2.")
    assert "    b\n    c\n    d\n" in str(info.value) and "    a" not in str(info.value)
