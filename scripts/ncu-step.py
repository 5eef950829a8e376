#!/usr/bin/env python3
"""ncu-step.py - one decode step's kernels from an Nsight Compute CSV.

Reads the CSV that `ncu --csv --print-units base --metrics
gpu__time_duration.sum,launch__grid_size,launch__block_size` writes, takes
the kernels between the last two launches of the step's closing kernel
(argmax: every greedy decode step ends with it), and prints them in order
and summed by kernel name, with the step's total kernel time.

usage: ncu-step.py FILE.csv [--end KERNEL_SUBSTRING] [--record BENCH.json OUT.json]
       ncu-step.py FILE.csv --all [--record BENCH.json OUT.json]

--all: every kernel of the file (a whole run), summed by kernel name only;
with --record, OUT.json is a run_kernels record of the sums.

--record: also write OUT.json, one record of the step's kernels (benchmark
decode_step_kernels) with the device, driver, commit, shape and ceilings
of BENCH.json, the `kiln bench latency` record of the same profiled run.
"""
import csv
import json
import sys
from collections import OrderedDict


def main():
    path = sys.argv[1]
    end = sys.argv[sys.argv.index("--end") + 1] if "--end" in sys.argv else "argmax"
    rows = OrderedDict()
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        k = r["ID"]
        e = rows.setdefault(k, {"name": r["Kernel Name"]})
        e[r["Metric Name"]] = r["Metric Value"]
    ks = list(rows.values())
    if "--all" in sys.argv:
        total, by = summarize(ks, "kernel time in the whole run", listing=False)
        if "--record" in sys.argv:
            write_record(total, by, "run_kernels", "us of kernel time in the whole run",
                         "every kernel of the run: warm-up, timed runs and ceilings", None,
                         "none: a breakdown, not a rate")
        return
    ends = [i for i, k in enumerate(ks) if end in k["name"]]
    if len(ends) < 2:
        sys.exit(f"ncu-step: fewer than two '{end}' kernels in {path}")
    step = ks[ends[-2] + 1: ends[-1] + 1]
    total, by = summarize(step, "kernel time in one step", listing=True)
    if "--record" in sys.argv:
        write_record(total, by, "decode_step_kernels", "us of kernel time in one step",
                     f"the kernels after the next-to-last '{end}' up to the last", True,
                     "the decode roofline of the same run, tokens/s: ")


def write_record(total, by, benchmark, unit, what, ceiling, ceiling_what):
    """The --record BENCH.json OUT.json record: device, driver, commit,
    shape and settings from BENCH.json (the profiled run's own record);
    ceiling True takes BENCH.json's, with ceiling_what as its prefix."""
    i = sys.argv.index("--record")
    bench, out = sys.argv[i + 1], sys.argv[i + 2]
    b = json.load(open(bench))
    b = b if isinstance(b, dict) and "benchmark" in b else (b[0] if isinstance(b, list)
                                                             else b["results"][0])
    if ceiling is True:
        ceiling, ceiling_what = b["ceiling"], ceiling_what + b["ceiling_what"]
    rec = {
        "benchmark": benchmark,
        "shape": b["shape"],
        "device": b["device"],
        "driver": b["driver"],
        "commit": b["commit"],
        "date": b["date"],
        "settings": {
            "profiler": "Nsight Compute, --clock-control none, each kernel timed alone "
                        "(gpu__time_duration.sum)",
            "run": b["settings"],
            "kernels": what,
        },
        "value": total,
        "unit": unit,
        "ceiling": ceiling,
        "ceiling_what": ceiling_what,
        "peer": None,
        "kernels": [{"kernel": n, "count": c, "us": u} for n, (c, u) in
                    sorted(by.items(), key=lambda x: -x[1][1])],
    }
    json.dump(rec, open(out, "w"), indent=1)


def summarize(ks, what, listing):
    """Prints the kernels (in order when listing) and their sums by name;
    returns (total us, {name: [count, us]})."""
    total = 0.0
    by = OrderedDict()
    if listing:
        print(f"{'us':>9}  {'grid':>7} {'block':>5}  kernel")
    for k in ks:
        us = float(k["gpu__time_duration.sum"].replace(",", "")) * 1e-3
        total += us
        name = k["name"].split("(")[0].replace("void ", "")[:90]
        if listing:
            print(f"{us:9.2f}  {k.get('launch__grid_size', ''):>7} "
                  f"{k.get('launch__block_size', ''):>5}  {name}")
        c = by.setdefault(name, [0, 0.0])
        c[0] += 1
        c[1] += us
    print(f"\n{len(ks)} kernels, {total:.1f} us of {what}\n")
    print(f"{'us':>9} {'share':>6} {'count':>5}  kernel")
    for name, (n, us) in sorted(by.items(), key=lambda x: -x[1][1]):
        print(f"{us:9.1f} {100 * us / total:5.1f}% {n:5d}  {name}")
    return total, by


if __name__ == "__main__":
    main()
