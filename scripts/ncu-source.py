#!/usr/bin/env python3
"""ncu-source.py CSV[.gz] [TOP] - where one kernel's warps wait, from the
per-instruction counters of an Nsight Compute report.

CSV is `ncu --import REP --page source --csv --print-source sass` (what
scripts/gpu-check.sh writes for KILN_GPU_NCU_ATTN=1).  Prints the warp stall
reasons over all samples, the executed instructions and stall samples by
opcode (IMAD includes the moves and adds ptxas writes as IMAD), and the TOP
(default 25) instructions with the most stall samples and their two main
reasons."""
import collections
import csv
import gzip
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", errors="replace") as f:
        rows = list(csv.reader(f))
    # row 0 names the kernel, row 1 holds the column names
    if len(rows) < 3:
        sys.exit("ncu-source: %s holds no instructions" % path)
    print(rows[0][1] if len(rows[0]) > 1 else rows[0][0])
    hdr, data = rows[1], rows[2:]
    ix = {h: i for i, h in enumerate(hdr)}
    for need in ("Source", "Instructions Executed", "Warp Stall Sampling (All Samples)"):
        if need not in ix:
            sys.exit("ncu-source: no column %r in %s" % (need, path))

    def num(r, k):
        try:
            return float(r[ix[k]].replace(",", ""))
        except (ValueError, IndexError):
            return 0.0

    stalls = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]
    samples = sum(num(r, "Warp Stall Sampling (All Samples)") for r in data) or 1.0
    insts = sum(num(r, "Instructions Executed") for r in data) or 1.0
    print("warp instructions executed %d, stall samples %d" % (insts, samples))
    print("stall reasons (share of samples):")
    by_reason = {c: sum(num(r, c) for r in data) for c in stalls}
    for c, v in sorted(by_reason.items(), key=lambda x: -x[1])[:10]:
        print("  %-22s %5.1f %%" % (c[len("stall_"):], 100 * v / samples))
    mix, wait = collections.Counter(), collections.Counter()
    for r in data:
        words = r[ix["Source"]].split()
        if words and words[0].startswith("@"):
            words = words[1:]
        if not words:
            continue
        op = words[0].split(".")[0]
        mix[op] += num(r, "Instructions Executed")
        wait[op] += num(r, "Warp Stall Sampling (All Samples)")
    print("by opcode: share of executed instructions, share of stall samples")
    for op, v in mix.most_common(20):
        print("  %-10s %5.1f %%  %5.1f %%" % (op, 100 * v / insts, 100 * wait[op] / samples))
    print("instructions with the most stall samples:")
    hot = sorted(data, key=lambda r: -num(r, "Warp Stall Sampling (All Samples)"))[:top]
    for r in hot:
        main2 = sorted(((num(r, c), c) for c in stalls), reverse=True)[:2]
        print("  %5.2f %%  %-58s %s" % (
            100 * num(r, "Warp Stall Sampling (All Samples)") / samples,
            " ".join(r[ix["Source"]].split())[:58],
            " ".join("%s=%d" % (c[len("stall_"):], v) for v, c in main2 if v)))


if __name__ == "__main__":
    main()
