"""Passkey prompt construction and scoring (METHOD.md), with a fake generator (< 2 s)."""

import re

import pytest

from yarn_jax.evals import passkey


def _encode(text):  # a whitespace "tokenizer": one token per word
    return [len(w) for w in text.split()]


def test_prompt_is_the_protocol_text():
    text = passkey.prompt_text(400, 0.25, 12345)
    lines = text.split("\n")
    assert lines[0] == (
        "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
        "them. I will quiz you about the important information there."
    )
    assert lines[2] == "The pass key is 12345. Remember it. 12345 is the pass key."
    assert lines[-1] == "What is the pass key? The pass key is"
    filler = (
        "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    )
    assert len(lines[1]) == 100 and len(lines[3]) == 300  # depth 0.25 of 400 filler characters
    assert (filler + " " + filler).startswith(lines[1]) and (filler + " " + filler * 3).startswith(
        lines[3][:89]
    )
    assert passkey.prompt_text(400, 0.0, 7).split("\n")[1] == ""
    assert passkey.prompt_text(400, 1.0, 7).split("\n")[3] == ""


@pytest.mark.parametrize("n_tokens,depth", [(100, 0.0), (257, 0.5), (1000, 0.9), (64, 1.0)])
def test_build_prompt_is_longest_that_fits(n_tokens, depth):
    ids, text, n_garbage = passkey.build_prompt(_encode, n_tokens, depth, 42)
    assert len(ids) <= n_tokens
    assert len(_encode(passkey.prompt_text(n_garbage + 1, depth, 42))) > n_tokens
    # the filler fills the budget: at most a couple of words short
    assert n_tokens - len(ids) <= 2
    assert "The pass key is 42. Remember it. 42 is the pass key." in text


def test_build_prompt_too_short():
    with pytest.raises(ValueError, match="shorter than the prompt"):
        passkey.build_prompt(_encode, 10, 0.5, 1)


@pytest.mark.parametrize(
    "answer,key,ok",
    [(" 31415. Remember", 31415, True), (" is 31415", 31415, True), ("31416", 31415, False),
     (" 314150", 31415, False), (" 12 then 31415", 31415, False), (" no digits", 5, False),
     ("", 5, False)],
)  # fmt: skip
def test_scoring_first_integer(answer, key, ok):
    assert passkey.passes(answer, key) is ok


def test_evaluate_with_fake_generators():
    # "oracle" reads the key from the prompt; "broken" always answers 1.
    words = {}

    def encode(text):
        out = []
        for w in text.split():
            out.append(words.setdefault(w, len(words)))
        return out

    def decode(ids):
        inv = {v: k for k, v in words.items()}
        return " " + " ".join(inv[i] for i in ids)

    def oracle(ids):
        text = decode(ids)
        key = re.search(r"pass key is (\d+)\.", text).group(1)
        return encode(key + ".")

    res = passkey.evaluate_passkey(
        {"oracle": oracle, "broken": lambda ids: encode("1")}, encode, decode,
        lengths=[80, 160], depths=[0.0, 0.5, 1.0], trials=2, seed=3, progress=False,
    )  # fmt: skip
    acc = {(s["method"], s["length"], s["depth"]): s["accuracy"] for s in res["summary"]}
    assert len(acc) == 12
    assert all(v == 1.0 for (m, _, _), v in acc.items() if m == "oracle")
    assert all(v == 0.0 for (m, _, _), v in acc.items() if m == "broken")
    keys = [t["key"] for t in res["trials"]]
    assert all(1 <= k <= 50000 for k in keys) and len(set(keys)) > 1
    # same prompts for both methods
    assert keys[: len(keys) // 2] == keys[len(keys) // 2 :]
    assert all(t["prompt_tokens"] <= t["length"] for t in res["trials"])
