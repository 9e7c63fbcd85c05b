"""Real `python train.py` processes: SIGKILL mid-run then resume == an uninterrupted run;
SIGTERM leaves a checkpoint; a corrupt checkpoint and an unknown flag fail clearly; the tiny
fine-tune lowers the loss and its exported folder loads in transformers.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from yarn_jax import data

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 12


def _cmd(workdir, source, *extra):
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "--config",
        str(ROOT / "configs" / "tiny.py"),
        "--workdir",
        str(workdir),
        f"--config.data.source={source}",
        f"--config.num_steps={STEPS}",
        "--config.checkpoint_every=3",
        "--config.progress_bar=False",
        "--config.tensorboard=False",
        *extra,
    ]


def _start(workdir, source, *extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        _cmd(workdir, source, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )


def _signal_after(proc, step, sig):
    """Start a thread that reads stdout until 'step {step}/' is logged, then sends `sig`.

    Each watched process gets its own reader, so none runs ahead while another is read."""
    box = {}

    def watch():
        out = []
        for line in proc.stdout:
            out.append(line)
            if line.startswith(f"step {step}/"):
                proc.send_signal(sig)
                break
        rest, err = proc.communicate(timeout=600)
        box["result"] = ("".join(out) + rest, err)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    def join():
        thread.join(timeout=600)
        return box["result"]

    return join


def _metrics(workdir):
    recs = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in recs}


def _params(workdir):
    from safetensors.numpy import load_file

    return load_file(str(workdir / "hf_export" / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    files = data.python_stdlib_files()
    docs = [pathlib.Path(f).read_text(errors="replace") for f in files[:24]]
    source = tmp / "train.jsonl"
    source.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:20]))
    heldout = docs[20:24]
    a, b, c = tmp / "a", tmp / "b", tmp / "c"
    # three processes at once: uninterrupted, SIGKILLed at step 7, SIGTERMed at step 5
    pa, pb, pc = _start(a, source), _start(b, source), _start(c, source)
    join_b, join_c = _signal_after(pb, 7, signal.SIGKILL), _signal_after(pc, 5, signal.SIGTERM)
    out_a, err_a = pa.communicate(timeout=600)
    out_b1, err_b1 = join_b()
    out_c, err_c = join_c()
    assert pa.returncode == 0, err_a[-3000:]
    assert pb.returncode == -signal.SIGKILL
    res = {"a": a, "b": b, "c": c, "source": source, "heldout": heldout}
    res["term"] = (pc.returncode, out_c, err_c)
    res["b_killed_metrics"] = _metrics(b)
    # resume b; meanwhile corrupt c's latest checkpoint and try to resume it; and a bad flag
    steps_c = sorted(int(p.name) for p in (c / "checkpoints").iterdir() if p.name.isdigit())
    res["c_steps"] = steps_c
    for f in (c / "checkpoints" / str(steps_c[-1]) / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage" * 3)
    pb2 = _start(b, source)
    pc2 = _start(c, source)
    pd = _start(tmp / "d", source, "--config.model.remat_policy=full")
    res["b_resume"] = pb2.communicate(timeout=600)
    assert pb2.returncode == 0, res["b_resume"][1][-3000:]
    # communicate() drains stdout/stderr while waiting: wait() could block on a full pipe
    out, err = pc2.communicate(timeout=600)
    res["corrupt"] = (pc2.returncode, out, err)
    out, err = pd.communicate(timeout=600)
    res["bad_flag"] = (pd.returncode, out, err)
    return res


def test_sigkill_then_resume_matches_uninterrupted_run(runs):
    killed = runs["b_killed_metrics"]
    assert 7 in killed and STEPS not in killed  # really killed mid-run
    assert "resumed from" in runs["b_resume"][0]
    ma, mb = _metrics(runs["a"]), _metrics(runs["b"])
    assert sorted(ma) == sorted(mb) == list(range(1, STEPS + 1))
    # same program, same inputs, same data order, same RNG: identical up to float32 rounding
    for s in range(1, STEPS + 1):
        assert mb[s]["loss"] == pytest.approx(ma[s]["loss"], rel=1e-6), s
        assert mb[s]["grad_norm"] == pytest.approx(ma[s]["grad_norm"], rel=1e-5), s
    pa, pb = _params(runs["a"]), _params(runs["b"])
    assert sorted(pa) == sorted(pb)
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_sigterm_saves_a_checkpoint(runs):
    rc, out, err = runs["term"]
    assert rc == 0, err[-2000:]
    assert "SIGTERM: saved checkpoint step" in out
    saved = int(out.split("SIGTERM: saved checkpoint step ")[1].split()[0])
    assert saved >= 5 and saved < STEPS
    assert saved in runs["c_steps"] and saved == runs["c_steps"][-1]


def test_corrupt_checkpoint_and_unknown_flag_fail_clearly(runs):
    rc, out, err = runs["corrupt"]
    assert rc != 0
    assert f"checkpoint step {runs['c_steps'][-1]}" in err and "unreadable" in err
    rc, out, err = runs["bad_flag"]
    assert rc != 0 and "remat_policy" in err


def test_tiny_finetune_lowers_loss_and_export_loads_in_transformers(runs):
    m = _metrics(runs["a"])
    assert m[STEPS]["loss"] < m[1]["loss"] - 1.0
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(runs["a"] / "hf_export"))
    assert model.config.rope_parameters["rope_type"] == "yarn"
    tok = data.ByteTokenizer()
    ids = [tok.bos_token_id, *tok.encode(runs["heldout"][0])][:256]
    with torch.no_grad():
        loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    # held-out text, scored by transformers: far below the uniform ln(258) = 5.55 of the init
    assert loss < 4.5, loss
    assert m[STEPS]["tokens_per_s"] > 0 and 0 < m[STEPS]["mfu"] < 1
