r"""Prepared GPU benchmark: a ~1.1B LLaMA train step at 16k tokens with cuDNN flash attention.
Goal: >= 45% MFU on one H200 (989 dense bf16 TFLOP/s).

    python bench/gpu_mfu.py --out results/gpu_mfu.jsonl [--max_minutes 8]
    python bench/gpu_mfu.py --smoke --seq_len 256 --attention auto --max_minutes 1   # CPU check

Sweeps a few (batch, remat) settings from the likely best down, each a fresh compile, and
prints / appends one JSON line per setting (tokens/s, model TFLOP/s, MFU, step time, peak
memory). Model: D=2048, 16 layers, 16 heads x 128 (8 kv heads), M=8192 SwiGLU, V=32000
(1.07e9 matmul params). bf16 compute with fp32 master weights and AdamW state, as in training;
MFU counts model FLOPs only (6 x matmul params + causal attention), not rematerialisation.
Not a test: run it when a GPU is lent and record the numbers in the note.
"""

import argparse
import json
import os
import sys
import time

# Settings commonly used for LLM training on Hopper with XLA; set before jax is imported.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_gpu_enable_latency_hiding_scheduler=true --xla_gpu_enable_triton_gemm=false",
)
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402

from yarn_jax import train_lib as tl  # noqa: E402

ONE_B = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}

# (global batch of 16k sequences, remat policy); best guesses first.
SWEEP = [(2, "dots"), (4, "full"), (2, "none"), (1, "none"), (8, "full")]


SMOKE = {**ONE_B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}  # fmt: skip


def config(batch: int, remat: str, seq_len: int, attention: str, arch=ONE_B):
    c = tl.base_config()
    c.model.init = "random"
    c.model.hf_config = dict(arch)
    c.model.rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}
    c.model.compute_dtype = "bfloat16"
    c.model.remat = remat
    c.model.attention_impl = attention
    c.model.loss_chunk = 4096
    c.batch_size = batch
    c.data.seq_len = seq_len
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.optim.warmup_steps = 0
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    ap.add_argument("--seq_len", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--attention", default="cudnn")
    ap.add_argument("--max_minutes", type=float, default=8.0)
    ap.add_argument("--smoke", action="store_true", help="toy model: check the script on CPU")
    args = ap.parse_args()
    arch = SMOKE if args.smoke else ONE_B
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_train import bench

    print(jax.devices(), flush=True)
    t_start = time.time()
    best = None
    for batch, remat in SWEEP:
        if time.time() - t_start > args.max_minutes * 60:
            break
        rec = {"batch": batch, "remat": remat}
        cfg = config(batch, remat, args.seq_len, args.attention, arch)
        est = tl.memory_estimate_for_config(cfg)["total"]
        limit, _ = tl.device_memory_bytes()
        if est > 0.95 * limit:  # skip what cannot fit instead of compiling into an OOM
            rec["skipped"] = f"estimate {est / 2**30:.1f} GiB > device {limit / 2**30:.1f} GiB"
            print(json.dumps(rec), flush=True)
            continue
        try:
            rec = bench(cfg, args.steps)
            rec["estimate_gib"] = est / 2**30
            stats = jax.devices()[0].memory_stats() or {}
            # Counted from process start (clear_caches does not reset it): the largest peak of
            # this row and every row before it.
            rec["peak_mem_gib_so_far"] = stats.get("peak_bytes_in_use", 0) / 2**30
        except Exception as e:  # noqa: BLE001 - OOM or compile failure: record, go on
            rec["error"] = f"{type(e).__name__}: {str(e)[:400]}"
        line = json.dumps(rec)
        print(line, flush=True)
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "a") as f:
                f.write(line + "\n")
        if rec.get("mfu") and (best is None or rec["mfu"] > best["mfu"]):
            best = rec
        jax.clear_caches()
    if best:
        print(
            f"BEST mfu {best['mfu']:.1%} at batch {best['batch']} remat {best['remat']}: "
            f"{best['tokens_per_s']:.0f} tokens/s, {best['model_tflops_per_s']:.0f} TFLOP/s"
        )


if __name__ == "__main__":
    main()
