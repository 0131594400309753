"""What a kernel inside an image costs: start, one cell, shutdown; and a notebook execution.

    .venv/bin/python benchmarks/bench_kernel.py [--image nbtest/kernel-py:1] [--runs 5]

IMAGE must be in the Docker engine and have Python and ipykernel (the test suite builds
nbtest/kernel-py:1: `pytest tests/test_kernel.py`). Timed, in one run, median of --runs:

  kernel   start a kernel, run `1 + 1`, shut it down (jupyter_client, as JupyterLab does):
           the local `python3` kernelspec | the nbimages kernel of IMAGE
           | `docker run --rm IMAGE python3 -c "import ipykernel.kernelapp"` (the floor: one
           container start and the import, no kernel)
  notebook a 4-cell notebook: nbclient with the local kernel | nbimages.execute in IMAGE
           (kernel check + run + output comparison)
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
from jupyter_client.manager import start_new_kernel  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

import nbimages  # noqa: E402
from timing import median_seconds  # noqa: E402


def kernel_round_trip(name: str) -> None:
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=90)
    try:
        reply = kc.execute_interactive("1 + 1", timeout=60, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="nbtest/kernel-py:1")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nbbench-kernel-"))
    os.environ["JUPYTER_DATA_DIR"] = str(work / "jupyter")
    info = nbimages.kernel.install(a.image, "nbbench-kernel")
    nb_path = work / "bench.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in (
        "import statistics", "values = list(range(1000))", "print(statistics.mean(values))",
        "sum(values)")]), str(nb_path))
    nbimages.execute(nb_path, a.image, output=nb_path)  # saved outputs from the image

    def local_notebook() -> None:
        nb = nbformat.read(str(nb_path), as_version=4)
        NotebookClient(nb, kernel_name="python3", timeout=60).execute()

    def image_notebook() -> None:
        assert nbimages.execute(nb_path, a.image).ok

    floor = ["docker", "run", "--rm", "--network", "none", a.image, "python3", "-c",
             "import ipykernel.kernelapp"]
    rows = [
        ("kernel: start, `1 + 1`, shutdown", "local python3 kernelspec",
         median_seconds(lambda: kernel_round_trip("python3"), a.runs)),
        ("", f"nbimages kernel of {a.image}",
         median_seconds(lambda: kernel_round_trip(info.name), a.runs)),
        ("", "docker run … python3 -c 'import ipykernel.kernelapp' (floor)",
         median_seconds(lambda: subprocess.run(floor, check=True, capture_output=True), a.runs)),
        ("notebook of 4 cells", "nbclient, local python3 kernel",
         median_seconds(local_notebook, a.runs)),
        ("", f"nbimages.execute in {a.image} (check, run, compare)",
         median_seconds(image_notebook, a.runs)),
    ]
    base = {0: rows[0][2], 3: rows[3][2]}
    print(f"| what | how | median s ({a.runs} runs) | × local |")
    print("|---|---|---:|---:|")
    for i, (what, how, seconds) in enumerate(rows):
        ref = base[0] if i < 3 else base[3]
        print(f"| {what} | {how} | {seconds:.2f} | {seconds / ref:.1f} |")
    nbimages.kernel.remove(info.name)


if __name__ == "__main__":
    main()
