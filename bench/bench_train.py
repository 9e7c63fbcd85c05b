r"""Train-step throughput (tokens/s) and MFU for a recipe, on whatever devices JAX sees.

    python bench/bench_train.py --config configs/tiny.py
    python bench/bench_train.py --config configs/smollm2_135m_yarn.py \
        --config.data.seq_len=1024 --config.batch_size=2 --config.model.init=random

Times `--steps` jitted train steps on random token ids after one compile step, with the
recipe's mesh, dtype, remat and loss chunking. MFU = tokens/s x model FLOPs per token
(6 x matmul params + causal attention) / (devices x peak); the CPU "peak" is a measured fp32
matmul rate (train_lib.peak_tflops_per_device), so CPU MFU is relative to what XLA's dot
reaches on this machine. Prints one JSON line. Random init is used (model.init=random keeps
hf_config; the numbers depend only on the architecture).
"""

import json
import time

import jax
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import config_flags

from yarn_jax import sharding as shd
from yarn_jax import train_lib as tl

_CONFIG = config_flags.DEFINE_config_file("config", None, "recipe file")
_STEPS = flags.DEFINE_integer("steps", 5, "timed steps")
flags.mark_flags_as_required(["config"])


def bench(cfg, steps: int) -> dict:
    with cfg.unlocked():
        cfg.model.init = "random"
    mesh = shd.make_mesh(**tl._to_dict(cfg.mesh))
    B, T = cfg.batch_size, cfg.data.seq_len
    shd.check_batch(B, mesh, cfg.grad_accum)
    model, lcfg = tl.build_model(cfg, abstract=True)
    mdef, _ = tl.split_model(model)
    arch = tl._arch_of(lcfg)
    tx, schedule = tl.make_optimizer(cfg.optim, cfg.num_steps)
    abs_state = tl.abstract_state(mdef, tx, mesh)
    state_sh = jax.tree.map(lambda s: s.sharding, abs_state)
    batch_sh = NamedSharding(mesh, shd.batch_pspec(2))
    pspecs = tl.param_pspecs(mdef, mesh)
    step = tl.make_train_step(
        mdef, tx, schedule, grad_accum=cfg.grad_accum, compute_dtype=cfg.model.compute_dtype,
        loss_chunk=cfg.model.loss_chunk, mesh=mesh, param_specs=pspecs,
    )  # fmt: skip
    jstep = jax.jit(
        step,
        in_shardings=(state_sh, {"input_ids": batch_sh}),
        out_shardings=(state_sh, NamedSharding(mesh, P())),
        donate_argnums=0,
    )

    def init_fn():
        m, _ = tl.build_model(cfg)
        return tl.init_state(tl.split_model(m)[1], tx, cfg.seed)

    state = jax.jit(init_fn, out_shardings=state_sh)()
    ids = np.random.default_rng(0).integers(0, arch.V, (B, T)).astype(np.int32)
    batch = {"input_ids": jax.device_put(ids, batch_sh)}
    t0 = time.perf_counter()
    compiled = jstep.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    jstep = compiled
    state, m = jstep(state, batch)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = jstep(state, batch)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / steps
    peak, src = tl.peak_tflops_per_device(cfg.peak_tflops)
    tps = B * T / dt
    flops = arch.flops_per_token(T)
    return {
        "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "mesh": dict(mesh.shape),
        "batch": B,
        "seq_len": T,
        "remat": cfg.model.remat,
        "dtype": cfg.model.compute_dtype,
        "matmul_params": arch.matmul_params(),
        "step_s": dt,
        "compile_s": compile_s,
        # XLA's buffer assignment vs train_lib's estimate (both per device)
        "compiled_temp_gib": getattr(mem, "temp_size_in_bytes", 0) / 2**30,
        "compiled_args_gib": getattr(mem, "argument_size_in_bytes", 0) / 2**30,
        "estimate_gib": tl.memory_estimate_for_config(cfg, dict(mesh.shape))["total"] / 2**30,
        "tokens_per_s": tps,
        "model_tflops_per_s": tps * flops / 1e12,
        "peak_tflops_per_device": peak,
        "peak_source": src,
        "mfu": tps * flops / (peak * 1e12 * jax.device_count()) if peak else None,
        "loss": float(m["loss"]),
    }


def main(argv):
    del argv
    print(json.dumps(bench(_CONFIG.value, _STEPS.value)), flush=True)


if __name__ == "__main__":
    app.run(main)
