"""The README's main job: build an image from notebook cells with the embedded engine (no
Docker), show its layer table and write a handout tar that `docker load` accepts.

Runs the same magics a notebook would, in a real IPython shell, and prints what each cell
returns. Usage: python scripts/demo.py [OUTPUT_DIR]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
from IPython.core.interactiveshell import InteractiveShell

out = Path(sys.argv[1] if len(sys.argv) > 1 else "handout").resolve()
out.mkdir(parents=True, exist_ok=True)
busybox = Path("/bin/busybox")

# Each entry is one notebook cell.
cells = [
    "%load_ext nbimages",
    "%image from scratch",
    "%%image file /app/clean.py --mode 0755\n"
    "import csv, statistics, sys\n"
    "rows = list(csv.DictReader(open('/data/measurements.csv')))\n"
    "print('mean', statistics.mean(float(r['value']) for r in rows))\n",
    "%%image file /data/measurements.csv\nday,value\n1,3.5\n2,4.0\n3,4.5\n",
    "%%image file /app/hello.sh --mode 0755\n"
    "echo \"hello from a notebook cell\"\ncat /data/measurements.csv | wc -l\n",
    "%image env PYTHONUNBUFFERED=1 LANG=C.UTF-8",
    "%image workdir /app",
]
if busybox.exists():
    # A shell for `docker run`: Debian's static busybox, one file in a layer of its own.
    cells.insert(2, "%image copy busybox /bin/busybox")
    cells.append('%image cmd ["/bin/busybox", "sh", "/app/hello.sh"]')
cells += [
    "img = %image build demo:1",
    "img",
    "%image inspect demo:1",
    f"%image save demo:1 {out / 'demo.tar'}",
    "print('digest  ', img.digest)\nprint('image id', img.id)",
]

shell = InteractiveShell.instance()
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
pd.set_option("display.max_colwidth", 48)
context = Path(tempfile.mkdtemp(prefix="nbimages-demo-"))  # the build context of `%image copy`
if busybox.exists():
    shutil.copy2(busybox, context / "busybox")
os.chdir(context)
for n, cell in enumerate(cells, 1):
    print(f"\nIn [{n}]: " + cell.replace("\n", "\n   ...: "))
    result = shell.run_cell(cell, store_history=True)
    if result.error_before_exec or result.error_in_exec:
        sys.exit(f"demo: cell {n} failed")
print(f"\nHandout written: {out / 'demo.tar'} (load it with: docker load -i {out / 'demo.tar'})")
