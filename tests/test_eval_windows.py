"""Window arithmetic, scoring and sharing of yarn_jax.evals.perplexity, without a model (< 2 s)."""

import math

import numpy as np
import pytest

from yarn_jax.evals import documents, report
from yarn_jax.evals.perplexity import Window, evaluate_perplexity, sliding_windows


@pytest.mark.parametrize(
    "n,L,S",
    [(10, 4, 1), (10, 4, 4), (11, 4, 3), (100, 16, 5), (1000, 256, 256), (257, 256, 256),
     (256, 256, 7), (300, 32, 32), (301, 32, 31)],
)  # fmt: skip
def test_every_token_scored_exactly_once(n, L, S):
    windows = sliding_windows(n, L, S)
    counts = np.zeros(n, int)
    for w in windows:
        assert w.end - w.begin == L  # one shape per length: one compilation
        assert w.begin + 1 <= w.score_from <= w.end
        counts[w.score_from : w.end] += 1
    # no overlap (S == L): the first token of each tiled window has no context
    unscored = {0} | (set(range(0, n - L + 1, L)) if S == L else set())
    assert all(counts[t] == (t not in unscored) for t in range(n))
    begins = [w.begin for w in windows]
    # begins every S tokens, then one window aligned to the end (closed form of the count)
    assert begins[:-1] == list(range(0, S * (len(begins) - 1), S))
    assert windows[-1].end == n
    assert len(windows) == (n - L) // S + 1 + ((n - L) % S != 0)
    # every scored token sees at least L - S tokens of context (or all before it)
    for w in windows:
        for t in range(w.score_from, w.end):
            assert t - w.begin >= min(t, L - S)


def test_brute_force_scoring_matches_press_style_loop():
    # Brute force: walk the document and give each token to the first window that covers it as a
    # target (not as its first token).
    n, L, S = 97, 20, 6
    windows = sliding_windows(n, L, S)
    owner = {}
    for i, w in enumerate(windows):
        for t in range(w.begin + 1, w.end):
            owner.setdefault(t, i)
    for i, w in enumerate(windows):
        assert [t for t in range(1, n) if owner[t] == i] == list(range(w.score_from, w.end))


def test_truncate_and_short_documents():
    assert sliding_windows(5000, 4096, 256, truncate=True) == [Window(0, 4096, 1)]
    assert sliding_windows(4095, 4096, 256) == []
    assert sliding_windows(4096, 4096, 256) == [Window(0, 4096, 1)]
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(100, 10, 11)


class _Doc:
    def __init__(self, name, ids, kind="book"):
        self.name, self.ids, self.kind = name, np.asarray(ids), kind


def _fake_nll_fn(offset, calls, long_offset=None):
    # A causal fake: nll[j] depends on tokens[: j + 2] only (like a real LM), plus a method offset
    # (`long_offset` beyond 32 tokens: a dynamic method whose RoPE changes with the length).
    def fn(ids):
        calls.append(len(ids))
        x = np.asarray(ids, np.float64)
        off = long_offset if long_offset is not None and len(ids) > 32 else offset
        return (np.cumsum(x)[1:] % 7) * 0.1 + off

    return fn


def test_token_weighted_and_reference_means():
    rng = np.random.RandomState(0)
    docs = [_Doc("a", rng.randint(0, 50, 60)), _Doc("b", rng.randint(0, 50, 45))]
    calls = []
    res = evaluate_perplexity(
        {"m": _fake_nll_fn(0.3, calls)}, {"m": None}, 8, docs, [16], stride=8, progress=False,
        signature=lambda cfg, hd, L: object(),  # nothing shared
    )  # fmt: skip
    # independent oracle: per token, the NLL from its owning window
    tot, n, win_loss = 0.0, 0, []
    for d in docs:
        for w in sliding_windows(len(d.ids), 16, 8):
            x = d.ids[w.begin : w.end].astype(np.float64)
            nll = (np.cumsum(x)[1:] % 7) * 0.1 + 0.3
            part = nll[w.score_from - w.begin - 1 :]
            tot, n = tot + part.sum(), n + part.size
            win_loss.append(part.mean())
    s = res["summary"][0]
    assert s["tokens_scored"] == n == (60 - 1) + (45 - 1)
    np.testing.assert_allclose(s["ppl"], math.exp(tot / n), rtol=1e-12)
    # the reference code's number: every window's mean loss, pooled over documents, averaged
    np.testing.assert_allclose(s["window_mean_loss_ppl"], math.exp(np.mean(win_loss)), rtol=1e-12)
    assert "exp of the mean over all windows" in report.perplexity_report(res)
    assert res["forwards"] == len(calls) == s["windows"]


def test_sharing_identical_rope_and_prefixes_gives_the_same_numbers():
    rng = np.random.RandomState(1)
    docs = [_Doc("a", rng.randint(0, 50, 80)), _Doc("b", rng.randint(0, 50, 40))]

    def fns(calls):
        return {"default": _fake_nll_fn(0.0, calls), "dyn": _fake_nll_fn(0.0, calls, 0.2)}

    # "dyn" has the default's RoPE up to length 32 and its own beyond (like dynamic NTK at L=32)
    def sig(cfg, hd, L):
        return ("default",) if cfg == "default" or L <= 32 else ("dyn", L)

    ropes = {"default": "default", "dyn": "dyn"}
    calls_shared, calls_plain = [], []
    kw = dict(head_dim=8, documents=docs, lengths=[16, 32, 64], truncate=True, progress=False)
    shared = evaluate_perplexity(fns(calls_shared), ropes, signature=sig, **kw)
    plain = evaluate_perplexity(fns(calls_plain), ropes, signature=lambda c, h, L: object(), **kw)
    assert len(shared["rows"]) == len(plain["rows"]) == 2 * (3 + 2)
    for a, b in zip(shared["rows"], plain["rows"]):
        assert (a["method"], a["length"], a["document"]) == (
            b["method"],
            b["length"],
            b["document"],
        )
        np.testing.assert_allclose(a["ppl"], b["ppl"], rtol=1e-12)
    # default: one 64-token pass for doc a (32, 16 are its prefixes), one 32 pass for doc b;
    # dyn: its own 64-token pass on doc a; everything else shared.
    assert sorted(calls_shared) == [32, 64, 64]
    assert shared["forwards"] == 3 and len(calls_plain) == plain["forwards"] == 2 * (3 + 2)
    assert {s["document"] for s in shared["skipped"]} == {"b"}  # 40 tokens < 64


def test_documents_with_one_name_keep_their_own_losses():
    # Two documents named alike, different tokens, every RoPE identical (so sharing is allowed):
    # each must be scored on its own tokens, not given the other's cached losses.
    docs = [_Doc("notes.txt", np.zeros(64, int)), _Doc("notes.txt", np.full(64, 100))]
    calls = []
    res = evaluate_perplexity(
        {"m": _fake_nll_fn(0.0, calls)}, {"m": None}, 8, docs, [64], stride=64, progress=False,
        signature=lambda c, h, L: ("same",),
    )  # fmt: skip
    ppl = [r["ppl"] for r in res["rows"]]
    x = np.full(64, 100, np.float64)
    np.testing.assert_allclose(ppl[0], 1.0, rtol=1e-12)  # all-zero tokens: nll 0
    np.testing.assert_allclose(ppl[1], math.exp(np.mean((np.cumsum(x)[1:] % 7) * 0.1)), rtol=1e-12)
    assert ppl[0] != ppl[1] and res["forwards"] == len(calls) == 2 and res["shared"] == 0


def test_no_document_long_enough_is_an_error():
    with pytest.raises(ValueError, match="longest has 10 tokens"):
        evaluate_perplexity({"m": _fake_nll_fn(0, [])}, {"m": None}, 8, [_Doc("a", range(10))],
                            [64], progress=False)  # fmt: skip


def test_bundled_documents_are_long_and_recorded():
    manifest = documents.bundled_manifest()
    kinds = {m["kind"] for m in manifest}
    assert kinds == {"book", "code"}
    for m in manifest:
        assert m["tokens_smollm2"] >= 32768 and m["licence"] and m["source"] and m["version"]
        text = (documents.DATA_DIR / m["file"]).read_bytes()
        assert len(text) == m["bytes"]
    assert sum(m["bytes"] for m in manifest) < 5e6


def test_load_documents_files_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("hello world " * 10)
    (tmp_path / "b.jsonl").write_text('{"text": "one doc"}\n{"text": "two doc"}\n')
    docs = documents.load_documents([str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")])
    assert [d.name for d in docs] == ["a.txt", "b[0]", "b[1]"]
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        documents.load_documents([str(tmp_path / "empty.txt")])
    with pytest.raises(FileNotFoundError):
        documents.load_documents([str(tmp_path / "missing.txt")])


def test_load_documents_names_are_unique_paths(tmp_path):
    for sub, text in (("a", "first text"), ("b", "second text")):
        (tmp_path / "d" / sub).mkdir(parents=True)
        (tmp_path / "d" / sub / "notes.txt").write_text(text)
        (tmp_path / sub / "t").mkdir(parents=True)
        (tmp_path / sub / "t" / "d.jsonl").write_text(f'{{"text": "{text}"}}\n')
    docs = documents.load_documents([str(tmp_path / "d")])
    assert [(d.name, d.text) for d in docs] == [
        ("a/notes.txt", "first text"),
        ("b/notes.txt", "second text"),
    ]
    docs = documents.load_documents([str(tmp_path / "a/t/d.jsonl"), str(tmp_path / "b/t/d.jsonl")])
    assert [(d.name, d.text) for d in docs] == [
        ("a/t/d[0]", "first text"),
        ("b/t/d[0]", "second text"),
    ]
    # --documents picks by those names
    docs = documents.load_documents([str(tmp_path / "d")], names=["b/notes.txt"])
    assert [d.text for d in docs] == ["second text"]
    # the same file twice: two documents with one name, refused with both sources listed
    one = str(tmp_path / "d" / "a" / "notes.txt")
    with pytest.raises(ValueError, match="same name.*'notes.txt' from .*notes.txt, .*notes.txt"):
        documents.load_documents([one, one])


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with report.atomic_output(out) as tmp:
            (tmp / "results.json").write_text("{}")
            raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with report.atomic_output(out) as tmp:
        (tmp / "results.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["results.json"]
