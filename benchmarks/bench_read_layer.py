"""Benchmark: records() and read_layer over every layer of a docker-archive (best of 5).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_read_layer.py [ARCHIVE]

ARCHIVE defaults to the small-files archive of bench_small_files.py.
"""
import time, tarfile, sys
from nbimages.oci.tarscan import records
from nbimages.oci.fileslice import FileSlice, open_slice
from nbimages.analysis.walk import read_layer
p=sys.argv[1] if len(sys.argv)>1 else "/var/tmp/nbimages-bench/small-files/small.tar"
mems=[m for m in tarfile.open(p).getmembers() if m.name.endswith("layer.tar")]
def best(f, k=5):
    b=9
    for _ in range(k):
        t=time.perf_counter(); f(); b=min(b,time.perf_counter()-t)
    return b
print("records    %.3f" % best(lambda: [sum(1 for _ in records(FileSlice(p, m.offset_data, m.size))) for m in mems]))
print("read_layer %.3f" % best(lambda: [read_layer(open_slice(p, m.offset_data, m.size)) for m in mems]))
