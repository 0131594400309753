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


# -- recipes -------------------------------------------------------------------------------------
def _recipe(base: str, **kw):
    from nbimages.builder.recipe import Recipe
    return Recipe(base, **kw)


def test_recipe_with_run_steps_builds_one_layer_per_step_and_runs(eng, busybox_image, docker_client,
                                                                  capsys):
    tag = f"nbtest/engine-recipe:{uuid.uuid4().hex[:8]}"
    r = _recipe(busybox_image)
    r.file("/app/hello.sh", "#!/bin/sh\necho hello from a file step\n", mode=0o755)
    r.run(f"echo tagged {tag} > /built && echo made-by-run")
    r.env(GREETING="it's $HOME")             # config: no layer
    r.run("echo first > /multi\necho second >> /multi")
    r.remove("/built")
    r.cmd(["sh", "-c", "/app/hello.sh; cat /multi; echo \"$GREETING\"; test ! -e /built"])
    built = r.build(tag, engine=eng)
    assert "made-by-run" in capsys.readouterr().out  # the log streamed
    base = _layers(docker_client, busybox_image)
    layers = _layers(docker_client, tag)
    assert layers[:len(base)] == base
    assert len(layers) - len(base) == sum(s.makes_layer for s in r.steps) == 4
    history = [h for h in docker_client.api.history(tag)][::-1][-len(r.steps):]
    kinds = ["COPY" if "#(nop) COPY" in h["CreatedBy"] else
             "config" if "#(nop)" in h["CreatedBy"] else "RUN" for h in history]
    assert kinds == ["COPY", "RUN", "config", "RUN", "RUN", "config"]
    result = nbimages.run(built, engine=eng, stream=False)
    assert result == 0, result.output
    assert result.output.splitlines() == ["hello from a file step", "first", "second", "it's $HOME"]
    docker_client.images.remove(tag)


def test_recipe_copy_steps_send_the_context_minus_dockerignore(eng, busybox_image, docker_client,
                                                                tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "keep.txt").write_text("kept\n")
    (ctx / "src" / "secret.env").write_text("TOKEN=1\n")
    (ctx / ".dockerignore").write_text("# comment\n**/*.env\n")
    tag = f"nbtest/engine-copy:{uuid.uuid4().hex[:8]}"
    r = _recipe(busybox_image, context=ctx)
    r.copy("src/", "/src/")
    built = nbimages.engines.build(r, tag, engine=eng, stream=False)
    result = built.run(["ls", "/src"], stream=False)
    assert result.output.split() == ["keep.txt"]
    assert len(_layers(docker_client, tag)) == len(_layers(docker_client, busybox_image)) + 1
    docker_client.images.remove(tag)


def test_failing_recipe_step_names_the_recipe_step(eng, busybox_image):
    r = _recipe(busybox_image)
    r.env(A="1")
    r.run("echo about to fail; echo on stderr >&2; exit 5")
    with pytest.raises(BuildError) as info:
        nbimages.engines.build(r, engine=eng, stream=False)
    msg = str(info.value)
    assert msg.startswith("recipe step 2 (RUN echo about to fail; echo on stderr >&2; exit 5) "
                          "failed with exit code 5.")
    assert "\n    about to fail\n" in msg + "\n" and "\n    on stderr\n" in msg + "\n"  # any order


def test_an_image_built_embedded_is_loaded_into_the_engine_and_runs(eng, busybox_in_registry,
                                                                    docker_client):
    r = _recipe(busybox_in_registry)
    r.file("/hello.txt", f"embedded {uuid.uuid4()}\n")
    r.cmd(["cat", "/hello.txt"])
    image = r.build("nbtest/embedded-run:1")  # daemonless, into the (test's) store
    assert eng.has_image(image.id) is None
    result = nbimages.run(image, engine=eng, stream=False)
    assert result == 0 and result.output.startswith("embedded ")
    assert docker_client.images.get(image.id).attrs["RootFS"]["Layers"] == image.diff_ids
    # and by name: the engine lacks it, the store has it
    result = nbimages.run("nbtest/embedded-run:1", ["cat", "/hello.txt"], engine=eng, stream=False,
                          pull="never")
    assert result.output.startswith("embedded ")
    docker_client.images.remove(image.id, force=True)


def test_engine_recipe_on_a_base_only_the_store_has(eng, busybox_in_registry, docker_client):
    base = _recipe(busybox_in_registry)
    base.file("/base.txt", f"store base {uuid.uuid4()}\n")
    stored = base.build("nbtest/store-only-base:1")
    r = _recipe("nbtest/store-only-base:1")
    r.run("cat /base.txt > /copied")
    built = nbimages.engines.build(r, engine=eng, stream=False)
    assert _layers(docker_client, built.id)[:-1] == stored.diff_ids
    assert built.run(["cat", "/copied"], stream=False).output.startswith("store base ")
    docker_client.images.remove(built.id, force=True)
    docker_client.images.remove(stored.id, force=True)


def test_dockerfile_cell_with_run_lines_builds_through_the_engine(eng, busybox_image, docker_client):
    from nbimages.builder.dockerfile import build_dockerfile
    tag = f"nbtest/engine-df:{uuid.uuid4().hex[:8]}"
    built = build_dockerfile(f"FROM {busybox_image}\nRUN echo from-run > /r\nCMD [\"cat\", \"/r\"]\n",
                             tag, engine=eng)
    assert built.run(stream=False).output == "from-run\n"
    docker_client.images.remove(tag)


def test_embedded_engine_builds_dockerfiles_without_run_and_explains_run(busybox_in_registry, tmp_path):
    image = nbimages.engines.build(f"FROM {busybox_in_registry}\nENV MODE=embedded\n",
                                   "nbtest/embedded-df:1", context=tmp_path, engine="embedded")
    assert "MODE=embedded" in image.config["config"]["Env"]
    with pytest.raises(BuildError, match="engine='docker'"):
        nbimages.engines.build(f"FROM {busybox_in_registry}\nRUN true\n", engine="embedded")


def test_an_engine_built_image_inspects_like_its_docker_save_tar(eng, busybox_image, docker_client,
                                                                 tmp_path):
    tag = f"nbtest/engine-inspect:{uuid.uuid4().hex[:8]}"
    r = _recipe(busybox_image)
    r.run("mkdir -p /data && echo one > /data/a && echo two > /data/b")
    r.run("rm /data/a && echo three > /data/b")  # a deletion and a rewrite: waste to find
    built = nbimages.engines.build(r, tag, engine=eng, stream=False)
    from_engine = built.inspect()
    from_tar = nbimages.inspect(f"docker-archive:{eng.save(tag, tmp_path / 'saved.tar')}")
    assert from_engine.id == from_tar.id == built.id
    assert from_engine.layers.equals(from_tar.layers)
    assert from_engine.files().equals(from_tar.files())
    assert from_engine.waste.equals(from_tar.waste) and len(from_engine.waste) > 0
    assert list(from_engine.layers["diff_id"]) == _layers(docker_client, tag)
    docker_client.images.remove(tag)
