#!/usr/bin/env python3
"""nsys-busy.py - how busy the GPU was in a stretch of an Nsight Systems trace.

Reads the SQLite export of `nsys profile --trace=cuda` (kernels, copies and
memsets from CUPTI) and takes the window from FRACTION of the trace's
device activity to its end (default 0.5: a benchmark run's warm-up and
ceilings come first).  Prints the window, the time some activity ran on
the device (the union of the intervals: overlapping streams count once),
the idle gaps by length, the device time summed by kind and by kernel
name, and the longest gaps with the activities on either side - what the
GPU waited between.

usage: nsys-busy.py TRACE.sqlite [FRACTION] [N_GAPS]
"""
import sqlite3
import sys
from collections import defaultdict

TABLES = {
    "CUPTI_ACTIVITY_KIND_KERNEL": "kernel",
    "CUPTI_ACTIVITY_KIND_MEMCPY": "memcpy",
    "CUPTI_ACTIVITY_KIND_MEMSET": "memset",
}
COPY_KINDS = {1: "HtoD", 2: "DtoH", 8: "DtoD", 10: "PtoP"}


def activities(db):
    names = {}
    try:
        names = dict(db.execute("select id, value from StringIds"))
    except sqlite3.Error:
        pass
    have = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
    out = []
    for tab, kind in TABLES.items():
        if tab not in have:
            continue
        if kind == "kernel":
            cols = [r[1] for r in db.execute(f"pragma table_info({tab})")]
            name_col = "shortName" if "shortName" in cols else "demangledName"
            for s, e, n in db.execute(f"select start, end, {name_col} from {tab}"):
                out.append((s, e, kind, names.get(n, str(n))))
        elif kind == "memcpy":
            for s, e, k, b in db.execute(f"select start, end, copyKind, bytes from {tab}"):
                out.append((s, e, kind, f"memcpy {COPY_KINDS.get(k, k)} {b} B"))
        else:
            for s, e in db.execute(f"select start, end from {tab}"):
                out.append((s, e, kind, "memset"))
    out.sort()
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    frac = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    n_gaps = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    iv = activities(sqlite3.connect(sys.argv[1]))
    if not iv:
        sys.exit("nsys-busy: no device activity in the trace")
    t0, t1 = iv[0][0], max(e for _, e, _, _ in iv)
    lo = t0 + (t1 - t0) * frac
    iv = [x for x in iv if x[0] >= lo]
    if not iv:
        sys.exit("nsys-busy: no device activity in the window")
    span = max(e for _, e, _, _ in iv) - iv[0][0]

    busy, gaps = 0, []
    cur_s, cur_e, last = iv[0][0], iv[0][1], iv[0]
    for a in iv[1:]:
        s, e = a[0], a[1]
        if s > cur_e:
            busy += cur_e - cur_s
            gaps.append((s - cur_e, last, a))
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
        if e >= cur_e:
            last = a
    busy += cur_e - cur_s

    print(f"window: the last {100 * (1 - frac):.0f} % of the trace's device activity, "
          f"{span / 1e6:.2f} ms, {len(iv)} activities")
    print(f"device busy {busy / 1e6:.2f} ms ({100 * busy / span:.1f} %), "
          f"idle {(span - busy) / 1e6:.2f} ms in {len(gaps)} gaps")
    for g_lo, g_hi in [(0, 2e3), (2e3, 10e3), (10e3, 100e3), (100e3, float("inf"))]:
        g = [x[0] for x in gaps if g_lo <= x[0] < g_hi]
        hi = "inf" if g_hi == float("inf") else f"{g_hi / 1e3:.0f}"
        print(f"  gaps {g_lo / 1e3:>4.0f}..{hi:<4} us: {len(g):6d}, {sum(g) / 1e6:8.3f} ms")

    by_kind, by_name, count = defaultdict(int), defaultdict(int), defaultdict(int)
    for s, e, kind, name in iv:
        by_kind[kind] += e - s
        key = " ".join(name.split(" ")[:2]) if kind == "memcpy" else name
        by_name[key] += e - s
        count[key] += 1
    print("device time by kind: " +
          ", ".join(f"{k} {v / 1e6:.2f} ms" for k, v in sorted(by_kind.items())))
    print("device time by name (us, calls, % of the window):")
    for k, v in sorted(by_name.items(), key=lambda x: -x[1])[:25]:
        print(f"  {v / 1e3:10.1f} {count[k]:7d} {100 * v / span:6.1f} %  {k[:90]}")
    print(f"the {n_gaps} longest gaps (us: before -> after):")
    for g, a, b in sorted(gaps, key=lambda x: -x[0])[:n_gaps]:
        print(f"  {g / 1e3:9.1f}  {a[3][:50]} -> {b[3][:50]}")


if __name__ == "__main__":
    main()
