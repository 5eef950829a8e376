#!/usr/bin/env python3
"""smi-window.py SMI_CSV T0 T1 - the GPU's clocks and power over [T0, T1].

SMI_CSV is what scripts/gpu-check.sh has nvidia-smi write every 200 ms
(timestamp, SM clock, memory clock, power, temperature, utilization, active
throttle reasons); T0 and T1 are Unix seconds.  Prints one line over the
samples of that window in which the GPU was busy (utilization >= 50 %):
the SM clock's median and minimum, the median power and the throttle
reasons seen, so a benchmark's figure can be read beside the clock it ran
at (a long run of large matmuls can hold the GPU at its power limit)."""
import sys
import time
from collections import Counter


def main():
    path, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    busy = []
    for line in open(path, errors="replace"):
        f = [x.strip() for x in line.split(",")]
        if len(f) < 7:
            continue
        try:
            ts = time.mktime(time.strptime(f[0].split(".")[0], "%Y/%m/%d %H:%M:%S"))
            clk, pw = int(f[1].split()[0]), float(f[3].split()[0])
            util = int(f[5].split()[0])
        except ValueError:
            continue
        if t0 <= ts <= t1 and util >= 50:
            busy.append((clk, pw, f[6]))
    if not busy:
        print("no busy samples")
        return
    clk = sorted(b[0] for b in busy)
    pw = sorted(b[1] for b in busy)
    why = ",".join(r for r, _ in Counter(b[2] for b in busy).most_common(2))
    print(f"sm {clk[len(clk) // 2]} MHz (min {clk[0]}), {pw[len(pw) // 2]:.0f} W, "
          f"throttle {why}, {len(busy)} samples")


if __name__ == "__main__":
    main()
