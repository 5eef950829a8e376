#!/usr/bin/env python3
"""Peer measurement for `kiln bench generate`: batch-1 prefill and greedy
decode speed of llama.cpp (through llama-cpp-python) on the same GGUF file
and the same prompt token ids.

    llamacpp_peer.py MODEL_GGUF IDS_FILE GEN_TOKENS THREADS REPEAT

IDS_FILE holds the prompt token ids, whitespace-separated.  Per repeat:
the KV cache is cleared, the prompt is evaluated in one batch
(n_batch = prompt length) and timed, then GEN_TOKENS - 1 single-token evals
are timed, each feeding back the argmax of the previous logits (greedy,
end-of-sequence ignored) - the same count of decode steps kiln's
gen_tps is taken over.  A warm-up repeat (not reported) maps the weights in.
Prints one JSON object: {"name", "version", "prefill_tps", "decode_tps",
"prefill_runs", "decode_runs"}; the reported figures are the medians.
"""
import json
import statistics
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    path, ids_file = sys.argv[1], sys.argv[2]
    gen, threads, repeat = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    with open(ids_file) as f:
        ids = [int(x) for x in f.read().split()]
    llm = Llama(model_path=path, n_ctx=len(ids) + gen + 8, n_threads=threads,
                n_threads_batch=threads, n_batch=len(ids), n_ubatch=len(ids),
                logits_all=False, verbose=False)
    n_vocab = llm.n_vocab()

    def last_argmax():
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        return int(logits.argmax())

    prefill, decode = [], []
    for r in range(repeat + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        tok = last_argmax()
        t1 = time.perf_counter()
        for _ in range(gen - 1):
            llm.eval([tok])
            tok = last_argmax()
        t2 = time.perf_counter()
        if r:  # the first pass is the warm-up
            prefill.append(len(ids) / (t1 - t0))
            decode.append((gen - 1) / (t2 - t1) if gen > 1 else 0.0)
    print(json.dumps({"name": "llama.cpp (llama-cpp-python)", "version": llama_cpp.__version__,
                      "prefill_tps": statistics.median(prefill),
                      "decode_tps": statistics.median(decode),
                      "prefill_runs": prefill, "decode_runs": decode}))


if __name__ == "__main__":
    main()
