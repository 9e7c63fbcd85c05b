"""eval.py end to end on a tiny model and tiny data, and every bad input: one message, exit 2,
nothing written. Also: configs/eval_default.py matches the library's defaults."""

import json
import pathlib

import pytest

from tests.test_eval_parity import make_tiny_model, tiny_text
from yarn_jax.evals import cli
from yarn_jax.evals.runner import EvalConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    folder = make_tiny_model(root / "tiny")
    (root / "doc.txt").write_text(tiny_text(300))
    (root / "doc2.txt").write_text(tiny_text(150))
    return root, folder


def _run(args, capsys):
    rc = cli.main([*args, "--no-progress"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_end_to_end_perplexity_and_passkey(tiny, tmp_path, capsys):
    root, folder = tiny
    out = tmp_path / "out"
    rc, stdout, err = _run(["--model", str(folder), "--data", str(root / "doc.txt"),
                            str(root / "doc2.txt"), "--lengths", "64,200", "--truncate",
                            "--method", "dynamic", "--output-dir", str(out)], capsys)  # fmt: skip
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "perplexity.png", "report.txt", "results.csv", "results.json"]  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    assert [s["method"] for s in res["summary"]] == ["default"] * 2 + ["dynamic_ntk"] * 2
    # doc2 (150 tokens) is skipped at 200 and says so
    assert [(s["document"], s["length"]) for s in res["skipped"]] == [("doc2.txt", 200)]
    assert "doc2.txt @ 200" in stdout and "Perplexity (token-weighted" in stdout
    # at 64 <= trained context dynamic NTK is the default rope: shared, identical
    by = {(s["method"], s["length"]): s for s in res["summary"]}
    assert by[("dynamic_ntk", 64)]["ppl"] == by[("default", 64)]["ppl"]
    assert by[("dynamic_ntk", 200)]["ppl"] != by[("default", 200)]["ppl"]
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,length,document") and len(csv_lines) == 1 + 6 + 4

    pk = tmp_path / "pk"
    rc, stdout, err = _run(["--task", "passkey", "--model", str(folder), "--lengths", "300",
                            "--depths", "0,1", "--trials", "1", "--max-new-tokens", "3",
                            "--method", "yarn", "--output-dir", str(pk)], capsys)  # fmt: skip
    assert rc == 0, err
    res = json.loads((pk / "passkey.json").read_text())
    assert len(res["trials"]) == 2 * 2 and (pk / "passkey.png").is_file()
    assert all(t["prompt_tokens"] <= 300 for t in res["trials"])
    assert "Passkey retrieval accuracy" in stdout


def test_tokenizer_flag_replaces_the_models_tokenizer(tiny, tmp_path, capsys):
    """--tokenizer X: the model's own tokenizer is not loaded (its folder may have none)."""
    root, folder = tiny
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((folder / name).read_bytes())
    out = tmp_path / "out"
    rc, stdout, err = _run(["--model", str(bare), "--tokenizer", str(folder), "--data",
                            str(root / "doc2.txt"), "--lengths", "64", "--truncate", "--method",
                            "default", "--output-dir", str(out)], capsys)  # fmt: skip
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    n_bytes = len((root / "doc2.txt").read_bytes())  # byte-level tokenizer: one token per byte
    assert res["settings"]["documents"][0]["tokens"] == n_bytes
    _bad(["--model", str(bare), "--data", str(root / "doc2.txt"), "--lengths", "64"], capsys,
         tmp_path / "o", "could not load its tokenizer")  # fmt: skip
    _bad(["--model", str(folder), "--tokenizer", str(tmp_path / "nope"), "--data",
          str(root / "doc2.txt"), "--lengths", "64"], capsys, tmp_path / "o2",
         "--tokenizer")  # fmt: skip


def _bad(args, capsys, out, match):
    rc, stdout, err = _run([*args, "--output-dir", str(out)], capsys)
    assert rc == 2
    assert err.startswith("eval.py: error:") and match in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


def test_unknown_method(tiny, tmp_path, capsys):
    _bad(["--method", "yarnn"], capsys, tmp_path / "o", "Valid methods: default, dynamic_linear")


def test_factor_below_one(tiny, tmp_path, capsys):
    _bad(["--method", "yarn", "--factor", "0.5"], capsys, tmp_path / "o", "factor must be >= 1")


def test_length_longer_than_every_document(tiny, tmp_path, capsys):
    root, folder = tiny
    _bad(["--model", str(folder), "--data", str(root / "doc.txt"), "--lengths", "4096"], capsys,
         tmp_path / "o", "longer than every document (the longest has 300 tokens)")  # fmt: skip


def test_missing_model(tiny, tmp_path, capsys):
    _bad(["--model", str(tmp_path / "nope")], capsys, tmp_path / "o", "no such file or directory")


def test_corrupt_safetensors_and_gguf(tiny, tmp_path, capsys):
    root, folder = tiny
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    st = broken / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    _bad(["--model", str(broken), "--data", str(root / "doc.txt"), "--lengths", "64"], capsys,
         tmp_path / "o", "could not load the model")  # fmt: skip
    gguf = tmp_path / "bad.gguf"
    gguf.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 20)
    _bad(["--model", str(gguf), "--data", str(root / "doc.txt"), "--lengths", "64"], capsys,
         tmp_path / "o", "could not load the model")  # fmt: skip


def test_empty_data_file(tiny, tmp_path, capsys):
    root, folder = tiny
    (tmp_path / "empty.txt").write_text("")
    _bad(["--model", str(folder), "--data", str(tmp_path / "empty.txt")], capsys, tmp_path / "o",
         "empty document")  # fmt: skip


def test_existing_output_is_kept_on_failure(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("old")
    rc, _, err = _run(["--method", "nope", "--output-dir", str(out)], capsys)
    assert rc == 2 and (out / "results.json").read_text() == "old"


def test_default_config_file_is_the_library_default():
    d = cli.load_config_file(str(REPO / "configs/eval_default.py"))
    assert EvalConfig.from_dict(d) == EvalConfig()
    args = cli.build_parser().parse_args(
        ["--method", "yarn", "--factor", "8", "--lengths", "1k,2k"]
    )
    cfg = cli.config_from_args(args)
    assert cfg.methods == ("yarn",) and dict(cfg.rope)["factor"] == 8.0
    assert cfg.lengths == (1024, 2048)


def test_method_list_all_and_rope_fields():
    from yarn_jax import rope
    from yarn_jax.evals import runner
    from yarn_jax.model import LlamaConfig

    names = runner.resolve_methods(["all"], "default", {})
    assert names[0] == "default" and "longrope" not in names  # needs per-frequency factors
    assert set(names) == set(rope.METHODS) - {"longrope"}
    assert runner.resolve_methods(["pi", "dynamic"], None, {}) == ["linear", "dynamic_ntk"]
    mcfg = LlamaConfig(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=8192, rope=rope.RopeConfig(rope_theta=1e5),
    )  # fmt: skip
    r = runner.method_rope(mcfg, "yarn", {"factor": 4.0, "beta_fast": 16.0})
    assert (r.rope_type, r.rope_theta, r.factor, r.original_max_position_embeddings) == (
        "yarn", 1e5, 4.0, 8192)  # fmt: skip
    assert r.beta_fast == 16.0
    assert runner.method_rope(mcfg, "default", {"factor": 4.0}).factor == 1.0
    assert runner.method_rope(mcfg, "llama3", {"factor": 8.0}).high_freq_factor == 4.0
    with pytest.raises(runner.EvalError, match="longrope"):
        runner.method_rope(mcfg, "longrope", {"factor": 4.0})
