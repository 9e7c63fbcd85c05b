"""Train library on one CPU device: schedule, loss, AdamW, remat, config and memory checks."""

import math
import os
import resource

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from yarn_jax import config_files
from yarn_jax import train_lib as tl

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def load_config(name, arg=None):
    return config_files.load_config(os.path.join(CONFIGS, name + ".py"), arg)


def test_schedule_closed_form():
    lin = tl.make_schedule(2e-5, 20, 400, "linear")
    const = tl.make_schedule(1e-6, 20, 1000, "constant")
    for step, want in [(0, 0.0), (10, 1e-5), (20, 2e-5), (210, 1e-5), (400, 0.0), (500, 0.0)]:
        assert float(lin(step)) == pytest.approx(want, rel=1e-6, abs=1e-12), step
    for step, want in [(0, 0.0), (5, 2.5e-7), (20, 1e-6), (999, 1e-6)]:
        assert float(const(step)) == pytest.approx(want, rel=1e-6, abs=1e-15), step


def _tiny_cfg(remat="none"):
    cfg = load_config("tiny")
    cfg.model.compute_dtype = "float32"
    cfg.model.remat = remat
    cfg.optim.warmup_steps = 0
    return cfg


def _ids(b=2, t=64, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 258, (b, t)), jnp.int32)


def test_chunked_loss_matches_float64_oracle():
    model, _ = tl.build_model(_tiny_cfg())
    ids = _ids()
    logits = np.asarray(model(ids), np.float64)  # [B, T, V]
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    tgt = np.asarray(ids)[:, 1:]
    want = np.mean(lse[:, :-1] - np.take_along_axis(logits[:, :-1], tgt[..., None], -1)[..., 0])
    for chunk in (0, 16, 24):  # 24: T=64 is not a multiple (two chunks + a remainder of 16)
        got = float(jax.jit(lambda i, c=chunk: tl.next_token_loss(model, i, c))(ids))
        assert got == pytest.approx(want, rel=1e-5), chunk  # float32 vs float64


def test_loss_chunk_remainder_never_builds_full_logits():
    model, _ = tl.build_model(_tiny_cfg())
    ids = _ids()  # [2, 64], V = 258

    def shapes(chunk):
        jaxpr = jax.make_jaxpr(lambda i: tl.next_token_loss(model, i, chunk))(ids)
        out = set()

        def walk(jp):
            for eqn in jp.eqns:
                out.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
                for p in eqn.params.values():
                    for j in p if isinstance(p, (list, tuple)) else (p,):
                        inner = getattr(j, "jaxpr", j)
                        if hasattr(inner, "eqns"):
                            walk(inner)

        walk(jaxpr.jaxpr)
        return out

    assert (2, 64, 258) in shapes(0)  # unchunked: the full [B, T, V] logits
    got = shapes(24)
    assert (2, 64, 258) not in got
    assert (2, 24, 258) in got and (2, 16, 258) in got  # full chunks, then the remainder


def test_rope_override_without_original_length_uses_the_model_context():
    cfg = _tiny_cfg()
    cfg.model.rope = {"rope_type": "yarn", "factor": 2.0}  # no original_max_position_embeddings
    _, lcfg = tl.build_model(cfg, abstract=True)
    assert lcfg.rope.rope_type == "yarn" and lcfg.rope.factor == 2.0
    assert lcfg.rope.original_max_position_embeddings == lcfg.max_position_embeddings == 256
    assert lcfg.rope.rope_theta == 10000.0


def test_adamw_step_matches_closed_form():
    cfg = _tiny_cfg()
    cfg.optim.lr = 1e-3
    model, _ = tl.build_model(cfg)
    mdef, flat = tl.split_model(model)
    tx, sched = tl.make_optimizer(cfg.optim, 100)
    state = tl.init_state(flat, tx, 0)
    ids = _ids()
    grads = jax.jit(jax.grad(lambda p: tl.next_token_loss(mdef.merge(p), ids, 0)))(state["params"])
    new, metrics = jax.jit(tl.make_train_step(mdef, tx, sched, compute_dtype="float32"))(
        state, {"input_ids": ids}
    )
    # First AdamW step (b1 .9, b2 .95, eps 1e-8, no decay), bias-corrected, in float64.
    for k in ("layers/0/attn/q_proj", "embed/embedding", "norm/scale"):
        g = np.asarray(grads[k], np.float64)
        m, v = 0.1 * g, 0.05 * g * g
        upd = -1e-3 * (m / 0.1) / (np.sqrt(v / 0.05) + 1e-8)
        np.testing.assert_allclose(
            np.asarray(new["params"][k]), np.asarray(flat[k]) + upd, atol=2e-6, err_msg=k
        )
    gn = math.sqrt(sum(float(np.sum(np.asarray(g, np.float64) ** 2)) for g in grads.values()))
    assert float(metrics["grad_norm"]) == pytest.approx(gn, rel=1e-4)
    assert int(new["step"]) == 1 and float(metrics["lr"]) == pytest.approx(1e-3)


def test_remat_policy_changes_residuals_not_the_result():
    from jax._src.ad_checkpoint import saved_residuals  # what the backward pass keeps

    ids = _ids()  # [B=2, T=64]; tiny: D=64, M=176, 2 layers
    results, residuals = {}, {}
    for policy in ("none", "full", "dots"):
        model, _ = tl.build_model(_tiny_cfg(policy))
        mdef, flat = tl.split_model(model)
        loss = lambda p, i, m=mdef: tl.next_token_loss(m.merge(p), i, 0)  # noqa: E731
        shapes = [tuple(a.shape) for a, why in saved_residuals(loss, flat, ids)]
        residuals[policy] = [s for s in shapes if s[:2] == (2, 64) or s[:1] == (2,)]
        if policy != "dots":  # (compiling is the slow part)
            results[policy] = jax.jit(jax.value_and_grad(loss))(flat, ids)
    # no remat: the MLP's [B, T, M] intermediates are kept for the backward pass
    assert (2, 64, 176) in residuals["none"]
    # full: per block only its input is kept: no [B, T, M] and no attention [B, ., T, T]
    assert (2, 64, 176) not in residuals["full"]
    scores = [s for s in residuals["none"] if len(s) >= 4 and s[-2:] == (64, 64)]
    assert scores  # attention probabilities [B, K, N/K, T, S] without remat
    assert not any(len(s) >= 4 and s[-2:] == (64, 64) for s in residuals["full"])
    assert len(residuals["full"]) < len(residuals["none"]) / 2
    # dots: matmul outputs are saveable, so [B, T, M] projections come back
    assert (2, 64, 176) in residuals["dots"] and residuals["dots"] != residuals["none"]
    assert float(results["full"][0]) == pytest.approx(float(results["none"][0]), rel=1e-6)
    k = "layers/1/mlp/down_proj"
    np.testing.assert_allclose(results["full"][1][k], results["none"][1][k], rtol=1e-5, atol=1e-7)


def test_unknown_and_bad_config_keys():
    cfg = load_config("tiny")
    with cfg.unlocked():
        cfg.model.remat_policy = "full"
        cfg.lr = 1.0
    with pytest.raises(ValueError, match=r"unknown config key\(s\): lr, model.remat_policy"):
        tl.validate_config(cfg)
    cfg = load_config("tiny")
    cfg.model.remat = "some"
    cfg.optim.schedule = "cosine"
    with pytest.raises(ValueError, match="model.remat='some'.*optim.schedule='cosine'"):
        tl.validate_config(cfg)


def test_every_recipe_validates():
    for name in (
        "tiny",
        "smollm2_135m_yarn",
        "llama2_7b_yarn_s16",
        "llama2_13b_yarn_s16",
        "llama2_7b_yarn_s32",
        "mistral_7b_yarn_s8",
    ):
        tl.validate_config(load_config(name))
    for method in ("pi", "ntk", "yarn"):
        tl.validate_config(load_config("llama2_7b_8k_ablation", method))
    with pytest.raises(ValueError, match="choose one of"):
        load_config("llama2_7b_8k_ablation", "rope")


def test_train_rejects_bad_setups(tmp_path):
    cfg = load_config("tiny")
    cfg.mesh.tensor = jax.device_count() + 1
    with pytest.raises(ValueError, match="mesh:"):
        tl.train(cfg, str(tmp_path / "a"))
    cfg = load_config("tiny")
    cfg.grad_accum = 3
    with pytest.raises(ValueError, match="batch_size=8 must be divisible"):
        tl.train(cfg, str(tmp_path / "b"))
    cfg = load_config("tiny")
    cfg.memory.device_gb = 0.001  # 1 MiB devices: refused before any weight is allocated
    with pytest.raises(ValueError, match="the run does not fit"):
        tl.train(cfg, str(tmp_path / "m"))
    cfg = load_config("tiny")
    cfg.resume = "must"
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        tl.train(cfg, str(tmp_path / "c"))


def _save_toy_checkpoint(directory, step):
    ckpts = tl.Checkpoints(directory, keep=3, use_async=False)
    assert ckpts.save(step, {"x": np.full(2, step, np.float32)}, {"position": step})
    ckpts.wait()
    return ckpts


def test_resume_never_refuses_a_workdir_with_checkpoints(tmp_path):
    _save_toy_checkpoint(str(tmp_path / "w" / "checkpoints"), 3).close()
    cfg = load_config("tiny")
    cfg.resume = "never"
    with pytest.raises(FileExistsError, match=r"(?s)resume='never'.*steps \[3\].*new --workdir"):
        tl.train(cfg, str(tmp_path / "w"))


def test_checkpoint_save_that_orbax_skips_raises_when_required(tmp_path):
    d = str(tmp_path / "checkpoints")
    _save_toy_checkpoint(d, 6).close()
    ckpts = tl.Checkpoints(d, keep=3, use_async=False)  # a second run in the same directory
    state = {"x": np.zeros(2, np.float32)}
    assert not ckpts.save(3, state, {"position": 0})  # older than step 6: orbax skips it
    with pytest.raises(RuntimeError, match=r"step 3 was not saved.*steps \[6\]"):
        ckpts.save(3, state, {"position": 0}, required=True)
    ckpts.close()


def test_tokenizer_model_mismatch_names_both(tmp_path):
    cfg = load_config("tiny")
    cfg.model.hf_config.vocab_size = 250  # BOS 256 / EOS 257 do not fit
    cfg.model.hf_config.bos_token_id = 1
    cfg.model.hf_config.eos_token_id = 2
    cfg.data.max_documents = 4
    with pytest.raises(ValueError, match=r"data.tokenizer='byte', model.init='random'"):
        tl.train(cfg, str(tmp_path / "t"))


LLAMA2_7B_PARAMS = 6_738_415_616  # published count; = 32*(4*4096^2 + 3*4096*11008 + 2*4096)
#                                   + 2*32000*4096 + 4096


def test_memory_estimate_7b_64k_without_allocating():
    cfg = load_config("llama2_7b_yarn_s16")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mesh = {"data": 1, "fsdp": 8, "tensor": 1}  # 8 x 80 GB GPUs, grad_accum 8
    est = tl.memory_estimate_for_config(cfg, mesh)
    grown_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20
    assert grown_gb < 2.0  # 7B fp32 weights alone would be 27 GB
    norms = 65 * 4096  # RMSNorm scales are replicated ("norm" has no mesh axis)
    assert 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 2 * 32000 * 4096 + 4096 == (
        LLAMA2_7B_PARAMS
    )
    per_device = (LLAMA2_7B_PARAMS - norms) / 8 + norms
    assert est["params_fp32"] == 4 * per_device
    assert est["opt_state_fp32"] == 8 * per_device
    # full remat keeps one bf16 [1, 65536, 4096] block input per layer
    assert est["activations_saved"] == 32 * 65536 * 4096 * 2
    assert est["total"] < 0.92 * 80 * 2**30
    tl.check_memory(est, 80 * 2**30, 0.92, "80 GB GPU")
    # the same recipe on one 80 GB device cannot fit: a clear error, not an OOM
    one = tl.memory_estimate_for_config(cfg, {"data": 1, "fsdp": 1, "tensor": 1})
    assert one["params_fp32"] == 4 * LLAMA2_7B_PARAMS
    with pytest.raises(ValueError, match="(?s)does not fit.*Shard more"):
        tl.check_memory(one, 80 * 2**30, 0.92, "80 GB GPU")


def test_derived_recipes_start_from_s16():
    s16, s32 = load_config("llama2_7b_yarn_s16"), load_config("llama2_7b_yarn_s32")
    assert s32.num_steps == 200 and s32.model.rope.factor == 32.0
    assert s32.optim.to_dict() == s16.optim.to_dict() and s32.data.seq_len == s16.data.seq_len
    s16_13b = load_config("llama2_13b_yarn_s16")
    assert s16_13b.optim.to_dict() == s16.optim.to_dict() and s16_13b.data == s16.data
    assert s16_13b.model.hf_config["num_hidden_layers"] == 40 and s16_13b.grad_accum == 4
    ntk = load_config("llama2_7b_8k_ablation", "ntk")
    assert ntk.data.seq_len == 8192 and ntk.model.rope.to_dict() == {
        "rope_type": "default",
        "rope_theta": 20000.0,
    }
    with pytest.raises(FileNotFoundError, match="no such config file"):
        config_files.load_config(os.path.join(CONFIGS, "no_such_recipe.py"))
