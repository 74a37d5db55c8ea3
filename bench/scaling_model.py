#!/usr/bin/env python3
"""Scaling model of condense's data-parallel training (docs/DATA_PARALLEL.md).

Reads a bench/results/data-parallel-*.json written by bench/run_data_parallel.sh
and prints, as markdown, the modelled step time of the stories110M and
tinyllama-1.1B shapes on 1-64 ranks over 25 and 100 Gb/s networks. What is
measured and what is assumed is printed with the tables.

Usage: bench/scaling_model.py RESULTS.json
"""
import json
import math
import sys

GLOBAL_TOKENS = 256 * 1024   # tokens per optimizer step (a recipe's batch x seq x grad_accum), fixed as ranks grow
ETA = 0.8                    # fraction of the line rate an all-reduce achieves (assumed)
ALPHA = 25e-6                # seconds per ring step (latency, assumed)
RANKS = [1, 2, 4, 8, 16, 32, 64]
H100_FLOPS = 0.4 * 989e12    # bf16 dense at 40% MFU (assumed: not measured here)
H100_ADAM_BYTES_PER_S = 3.35e12 * 0.8  # HBM3 at 80% (assumed)

SHAPES = {  # model/shapes.cpp
    "stories110M": dict(dim=768, layers=12, heads=12, kv=12, ffn=2048, vocab=32000, tied=True),
    "tinyllama-1.1B": dict(dim=2048, layers=22, heads=32, kv=4, ffn=5632, vocab=32000, tied=False),
}


def params(s):
    hd = s["dim"] // s["heads"]
    q, kv = s["heads"] * hd, s["kv"] * hd
    block = s["dim"] * q + 2 * s["dim"] * kv + q * s["dim"] + 3 * s["dim"] * s["ffn"] + 2 * s["dim"]
    emb = s["vocab"] * s["dim"]
    return emb + s["layers"] * block + s["dim"] + (0 if s["tied"] else emb), block


def unique_rows(tokens, vocab):
    """Expected distinct rows among `tokens` uniform draws from `vocab`."""
    return vocab * (1.0 - math.exp(-tokens / vocab))


def step(shape, n, t_tok, adam_s, gbps, tokens=GLOBAL_TOKENS):
    s = SHAPES[shape]
    p, block = params(s)
    grad_bytes = 4.0 * p
    bw = gbps * 1e9 / 8 * ETA
    ring = lambda b: (2.0 * (n - 1) / n * b / bw + 2 * (n - 1) * ALPHA) if n > 1 else 0.0
    compute = tokens / n * t_tok
    backward = compute * 2.0 / 3.0
    dense = ring(grad_bytes)
    # the first block's bucket is filled when the backward ends: never hidden
    last = dense * block / p
    exposed = last + max(0.0, dense - last - backward)
    # the embedding lookup's rows: gathered or all-reduced densely, after the backward
    if n > 1:
        rows = unique_rows(tokens / n, s["vocab"])
        gather = n * rows * (s["dim"] + 1) * 4 / bw
        exposed += min(gather, ring(4.0 * s["vocab"] * s["dim"]))
    total = compute + exposed + adam_s
    return dict(compute=compute, allreduce=dense, exposed=exposed, adam=adam_s, step=total)


def main():
    res = json.load(open(sys.argv[1]))
    runs = {(r["shape"], r["bucket_mb"]): r for r in res["runs"]}
    m = runs[("stories110M", 25.0)]
    tok_rank = m["batch_per_rank"] * m["seq"]
    t_tok = m["compute_s_per_step"] / tok_rank
    adam_per_param = m["adamw_s"] / m["params"]
    print(f"Measured on {m['cpu']} ({m['isa']}), {m['ranks']} ranks x {m['threads_per_rank']} thread, "
          f"stories110M shape, {tok_rank} tokens per rank per step:")
    print(f"- compute (forward + backward + bucket copies) {m['compute_s_per_step']:.3f} s per step: {t_tok*1e3:.2f} ms per token per rank")
    print(f"- AdamW over {m['params']/1e6:.1f}M parameters: {m['adamw_s']:.3f} s ({adam_per_param*1e9:.2f} ns per parameter)")
    print(f"- gradient all-reduce {m['allreduce_bytes_per_step']/1e6:.0f} MB per step in {m['buckets_per_step']:.0f} buckets: "
          f"{m['allreduce_s_per_step']:.3f} s, exposed {m['exposed_s_per_step']:.3f} s: {100*m['hidden_fraction']:.0f}% hidden")
    # the overlap model at the measured point: this machine's shared-memory
    # all-reduce (measured alone) as the network, the measured tokens per step
    busbw = m["allreduce_alone_busbw_gbps"] * 8 / ETA  # as a line rate for step()
    pred = step("stories110M", 2, t_tok, m["adamw_s"], busbw, tokens=2 * tok_rank)
    print(f"- check of the overlap model at this point (the all-reduce measured alone, {m['allreduce_alone_busbw_gbps']:.2f} GB/s, as the network): "
          f"it predicts {pred['allreduce']:.2f} s of all-reduce, {pred['exposed']:.3f} s exposed; measured "
          f"{m['allreduce_s_per_step']:.2f} s and {m['exposed_s_per_step']:.3f} s (the all-reduce thread shares 2 cores with 2 compute threads)")
    print()
    print(f"Assumed: {GLOBAL_TOKENS} tokens per step split evenly over the ranks (the recipe's global batch); compute per token "
          f"proportional to parameters (1.1B: the 110M measurement x {params(SHAPES['tinyllama-1.1B'])[0]/params(SHAPES['stories110M'])[0]:.1f}); "
          f"ring all-reduce at {ETA:.0%} of line rate plus {ALPHA*1e6:.0f} us per ring step; every bucket but the first block's hidden "
          f"behind the backward (2/3 of compute) while it lasts; the embedding lookup's rows (uniform tokens) after it; "
          f"AdamW on every rank over all parameters (not sharded); f32 gradients.")
    print()
    profiles = [("one core of this machine (measured)", lambda shape: t_tok * params(SHAPES[shape])[0] / m["params"],
                 lambda shape: adam_per_param * params(SHAPES[shape])[0]),
                ("an H100, bf16 at 40% MFU (assumed, not measured)", lambda shape: 6.0 * params(SHAPES[shape])[0] / H100_FLOPS,
                 lambda shape: 28.0 * params(SHAPES[shape])[0] / H100_ADAM_BYTES_PER_S)]
    for name, tt, ad in profiles:
        for shape in SHAPES:
            p = params(SHAPES[shape])[0]
            print(f"**{shape}** ({p/1e6:.0f}M parameters, {4*p/1e6:.0f} MB of f32 gradients), each rank {name}:")
            print()
            print("| ranks | compute s | 25 Gb/s: all-reduce s | exposed s | step s | efficiency | 100 Gb/s: all-reduce s | exposed s | step s | efficiency |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            base = {g: step(shape, 1, tt(shape), ad(shape), g)["step"] for g in (25, 100)}
            for n in RANKS:
                a, b = step(shape, n, tt(shape), ad(shape), 25), step(shape, n, tt(shape), ad(shape), 100)
                fmt = lambda x: f"{x:.3g}"
                print(f"| {n} | {fmt(a['compute'])} | {fmt(a['allreduce'])} | {fmt(a['exposed'])} | {fmt(a['step'])} | "
                      f"{base[25]/a['step']/n:.0%} | {fmt(b['allreduce'])} | {fmt(b['exposed'])} | {fmt(b['step'])} | {base[100]/b['step']/n:.0%} |")
            print()


if __name__ == "__main__":
    main()
