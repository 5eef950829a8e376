#!/usr/bin/env python3
"""attn-records.py - the attention lab's JSON lines as benchmark records.

usage: attn-records.py LAB.jsonl BENCH.json OUT.json

LAB.jsonl is what `attention_bench --json` appends (one object per figure);
BENCH.json is any `kiln bench` record of the same call, for the driver and
date.  OUT.json gets one record per decode and prefill figure with the
keys every record in bench/results has; the ceiling is the copy bandwidth
of the same run for decode (GB/s) and none for prefill (the lab measures
no matmul peak).
"""
import json
import sys


def main():
    lab, bench, out = sys.argv[1:4]
    lines = [json.loads(l) for l in open(lab) if l.strip()]
    b = json.load(open(bench))
    b = b if isinstance(b, dict) and "benchmark" in b else (b[0] if isinstance(b, list)
                                                             else b["results"][0])
    copy = next((l["copy_gbps"] for l in lines if l["op"] == "copy"), None)
    recs = []
    for l in lines:
        if l["op"] == "copy":
            continue
        model = l.get("model", "bge-base-en-v1.5" if l["op"] == "encoder" else "llama-3.1-8b")
        shape = f"{model} ({l['n_heads']} q / {l['n_kv_heads']} kv heads x {l['head_dim']})"
        if l["op"] == "decode":
            settings = {k: l[k] for k in ("dtype", "batch", "ctx", "split", "min_keys",
                                          "block_size") if k in l}
            value, unit = l.get("kv_gbps"), "GB/s (K/V read)"
            ceiling, what = copy, "device-to-device copy bandwidth, read + write, same run"
        else:
            settings = {k: l[k] for k in ("variant", "dtype", "causal", "seqs", "len", "tokens",
                                          "layout") if k in l}
            value, unit = l["tflops"], "TFLOP/s"
            ceiling, what = None, "none measured by the lab (see the prefill records)"
        recs.append({
            "benchmark": "attention_" + l["op"],
            "shape": shape,
            "settings": settings,
            "value": value,
            "unit": unit,
            "ceiling": ceiling,
            "ceiling_what": what,
            "peer": None,
            "device": l["device"],
            "driver": b["driver"],
            "commit": l.get("commit", b["commit"]),
            "date": b["date"],
            "us": l.get("us"),
        })
    json.dump(recs, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
