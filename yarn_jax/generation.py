"""Greedy generation with a fixed-size KV cache (prefill + decode).

The cache holds keys *before* RoPE (YaRN paper §3.3). Every step rotates the cached keys with
sin/cos at the current length l = 1 + max position, so with a dynamic method (whose frequencies
change with l) every cached key is rotated as a full forward pass over the same tokens would
rotate it. That makes the first layer exact. Deeper layers of a dynamic method differ slightly
(~6e-5 on logits in the tests): the cached keys/values of earlier tokens in layer >= 2 come from
hidden states computed at the length at which those tokens entered the cache, which no cache can
avoid without recomputing the prefix. Static methods match a full forward pass.

Compilation: one prefill per prompt shape and one decode step for the whole generation (the
cache has a fixed size `prompt + max_new_tokens`, the write index is a traced int32).

Dimension key: B batch, T length, S cache length, V vocab.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from yarn_jax.model import Llama, init_cache

__all__ = ["decode_step", "generate", "prefill"]


@functools.partial(jax.jit, static_argnums=(0,), donate_argnums=(2,))
def _step(graphdef, state, cache, ids_bt):
    model = nnx.merge(graphdef, state)
    h_btd, cache = model.forward_hidden(ids_bt, cache=cache)
    # Only the last position's logits are needed: never materialise [T, V] for the prompt.
    return model.forward_logits(h_btd[:, -1:]), cache


def prefill(model: Llama, prompt_bt, max_len: int):
    """Run the prompt through a fresh cache of `max_len` slots: (last logits [B, 1, V], cache)."""
    prompt_bt = jnp.asarray(prompt_bt, jnp.int32)
    B, T = prompt_bt.shape
    if T > max_len:
        raise ValueError(f"prompt length {T} exceeds the cache size {max_len}")
    graphdef, state = nnx.split(model)
    return _step(graphdef, state, init_cache(model.cfg, B, max_len), prompt_bt)


def decode_step(model: Llama, cache, ids_b1):
    """One token per sequence through the cache: (logits [B, 1, V] float32, new cache)."""
    graphdef, state = nnx.split(model)
    return _step(graphdef, state, cache, jnp.asarray(ids_b1, jnp.int32))


def generate(
    model: Llama,
    prompt_ids,
    max_new_tokens: int = 10,
    *,
    eos_token_id: int | None = None,
    return_logits: bool = False,
):
    """Greedy continuation of `prompt_ids` ([T] or [B, T] ints; rows of equal length).

    Returns the new token ids ([n] or [B, n], numpy int32), stopping early when every row has
    produced `eos_token_id` (tokens after a row's eos are that eos). With `return_logits`, also
    the float32 logits [B, n, V] each new token was chosen from.
    """
    ids = np.asarray(prompt_ids)
    squeeze = ids.ndim == 1
    ids_bt = ids[None] if squeeze else ids
    if ids_bt.ndim != 2 or ids_bt.shape[1] == 0:
        raise ValueError(f"prompt_ids must be [T] or [B, T] with T > 0, got shape {ids.shape}")
    B, T = ids_bt.shape
    logits, cache = prefill(model, ids_bt, T + max_new_tokens)
    graphdef, state = nnx.split(model)  # split once for every decode step
    out, all_logits = [], []
    done = np.zeros(B, bool)
    for i in range(max_new_tokens):
        if return_logits:
            all_logits.append(logits[:, 0])
        nxt = np.asarray(jnp.argmax(logits[:, 0], axis=-1)).astype(np.int32)
        if eos_token_id is not None:
            nxt = np.where(done, eos_token_id, nxt)
            done |= nxt == eos_token_id
        out.append(nxt)
        if (eos_token_id is not None and done.all()) or i == max_new_tokens - 1:
            break
        logits, cache = _step(graphdef, state, cache, jnp.asarray(nxt[:, None]))
    new = np.stack(out, axis=1) if out else np.zeros((B, 0), np.int32)
    new = new[0] if squeeze else new
    if return_logits:
        lg = np.asarray(jnp.stack(all_logits, axis=1)) if all_logits else None
        return new, lg
    return new
