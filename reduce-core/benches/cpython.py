"""CPython's side of the comparison benchmark (reduce-core/benches/compare.rs).

Reads `name<TAB>path` lines on stdin, each a pickle that reduce wrote at
protocol 5; loads it (so that CPython times the very same data) and times
`pickle.dumps(obj, protocol=5)` and `pickle.loads(data)` with the C
`_pickle`. Prints `name<TAB>dumps_ns<TAB>loads_ns<TAB>bytes<TAB>peak`, each
time the median of several repeats, and `peak` the memory `pickle.loads`
took as the Rust side measures it: (input + the most the load held at once)
/ (input + what the result holds), from tracemalloc.
"""

import gc
import pickle
import statistics
import sys
import timeit
import tracemalloc
import types

assert pickle.Pickler.__module__ == "_pickle", "the C pickler is required"


class Record:
    """The Rust benchmark's `Profile`, which reduce writes as an instance
    of `reduce_bench.Record` with its fields as `__dict__`."""


Record.__module__ = "reduce_bench"
sys.modules["reduce_bench"] = types.ModuleType("reduce_bench")
sys.modules["reduce_bench"].Record = Record


def median_ns(fn, budget=0.2, repeats=15):
    """Median time of one call, in nanoseconds."""
    number = 1
    while True:
        took = timeit.timeit(fn, number=number)
        if took > budget / repeats or number >= 1 << 20:
            break
        number *= 2
    runs = timeit.repeat(fn, number=number, repeat=repeats)
    return statistics.median(runs) / number * 1e9


def peak_ratio(data):
    """The peak memory of one `pickle.loads(data)`, as a multiple of input
    plus result."""
    gc.collect()
    tracemalloc.start()
    obj = pickle.loads(data)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del obj
    return (len(data) + peak) / (len(data) + held)


for line in sys.stdin:
    name, path = line.rstrip("\n").split("\t")
    data = open(path, "rb").read()
    obj = pickle.loads(data)
    written = pickle.dumps(obj, protocol=5)
    dumps = median_ns(lambda: pickle.dumps(obj, protocol=5))
    loads = median_ns(lambda: pickle.loads(data))
    peak = peak_ratio(data)
    print(f"{name}\t{dumps:.0f}\t{loads:.0f}\t{len(written)}\t{peak:.3f}", flush=True)
