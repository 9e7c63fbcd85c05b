"""Tokenizer loading from GGUF metadata and HF folders; oracle: transformers' GGUF tokenizer."""

import json
import pathlib
import re

import pytest
import tokenizers

from yarn_jax.convert.tokenizer import load_tokenizer

DATA = pathlib.Path(__file__).resolve().parents[1] / "yarn_jax" / "evals" / "data"

# Prose, code, digits, non-ASCII, irregular whitespace and a chat special token in the middle.
EXTRA = (
    "\n\nIn 2024, 12345 people paid $3.50 (or 3,50 €) each — naïve café, 日本語, emoji 🙂.\n"
    "def f(x):\n\tif x  >=  10_000:\n        return x ** 2  # comment\n"
    "<|im_start|>user\nWhat's 7*8?<|im_end|>\n   trailing   \n"
)


def _paragraph() -> str:
    books = sorted((DATA / "books").glob("*.txt")) if (DATA / "books").is_dir() else []
    code = sorted((DATA / "code").glob("*.txt")) if (DATA / "code").is_dir() else []
    text = ""
    if books:
        text += books[0].read_text()[2000:5000]
    if code:
        text += code[0].read_text()[1000:4000]
    return text + EXTRA


@pytest.fixture(scope="module")
def ours(smollm2_gguf):
    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="module")
def hf_tok(smollm2_gguf):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name
    )


def _no_spaces_before_digits(text: str) -> str:
    # transformers' GGUF converter ignores tokenizer.ggml.pre == "smollm" and splits with plain
    # GPT-2 rules; the two differ only where 2+ whitespace characters precede a digit (see below).
    return re.sub(r"\s+(?=\d)", " ", text)


def test_gguf_tokenizer_matches_transformers(ours, hf_tok):
    text = _no_spaces_before_digits(_paragraph())
    ids = ours.encode(text)
    ref = hf_tok.encode(text, add_special_tokens=False)
    assert len(ids) > 500
    assert ids == ref
    assert ours.decode(ids) == text  # byte-level BPE round-trips exactly
    assert ours.vocab_size == len(hf_tok) == 49152
    assert (ours.bos_token_id, ours.eos_token_id) == (hf_tok.bos_token_id, hf_tok.eos_token_id)
    assert (ours.bos_token_id, ours.eos_token_id) == (1, 2)  # the file's tokenizer.ggml.*_id
    # Special tokens are atomic; SmolLM2 splits every digit (llama.cpp "smollm" pre-tokenizer).
    assert ours.encode("<|im_end|>") == [2]
    assert len(ours.encode("12345")) == 5
    # The file says add_bos_token = false, so add_special_tokens adds nothing.
    assert ours.encode("hi", add_special_tokens=True) == ours.encode("hi")
    assert ours.encode_batch(["a b", "c"]) == [ours.encode("a b"), ours.encode("c")]


def test_smollm_pre_tokenizer_as_llamacpp(ours, hf_tok):
    """Digits split off first, then GPT-2 rules: llama.cpp's "smollm" pre-tokenizer
    (llama-vocab.cpp: regex_exprs = {"\\p{N}", <gpt2 regex>}) and SmolLM2's own tokenizer.json
    (Sequence[Digits(individual_digits=True), ByteLevel]). Oracle: that pipeline built here on
    transformers' vocabulary and merges for the same file."""
    from tokenizers import pre_tokenizers

    oracle = tokenizers.Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
    oracle.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    text = _paragraph()
    assert ours.encode(text) == oracle.encode(text, add_special_tokens=False).ids
    assert ours.decode(ours.encode(text)) == text
    # Where transformers' GPT-2 split differs: "  10" -> "ĠĠ" "1" "0", not "Ġ" "Ġ" "1" "0".
    pieces = [ours.backend.id_to_token(i) for i in ours.encode("x  10")]
    assert pieces == ["x", "ĠĠ", "1", "0"]
    assert hf_tok.convert_ids_to_tokens(hf_tok.encode("x  10", add_special_tokens=False)) == [
        "x",
        "Ġ",
        "Ġ",
        "1",
        "0",
    ]


def test_save_loads_in_transformers_and_back(ours, tmp_path):
    import transformers

    ours.save(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["bos_token"] == "<|im_start|>" and cfg["eos_token"] == "<|im_end|>"
    text = _paragraph()
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.encode(text, add_special_tokens=False) == ours.encode(text)
    assert (hf.bos_token_id, hf.eos_token_id) == (1, 2)
    again = load_tokenizer(tmp_path)  # HF folder path
    assert again.encode(text) == ours.encode(text)
    assert (again.bos_token_id, again.eos_token_id, again.vocab_size) == (1, 2, 49152)
    assert again.chat_template == ours.chat_template is not None
    assert load_tokenizer(tmp_path / "tokenizer.json").encode("x y") == ours.encode("x y")


def test_hf_folder_special_ids_from_config(ours, tmp_path):
    # A folder with tokenizer.json but special tokens only in config.json (ids).
    ours.backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [2, 0]}))
    tok = load_tokenizer(tmp_path)
    assert (tok.bos_token_id, tok.eos_token_id) == (1, 2)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a tokenizer source"):
        load_tokenizer(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "empty")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(ValueError, match="bad.gguf"):
        load_tokenizer(bad)


def test_gguf_without_tokenizer(tmp_path):
    from tests.test_gguf import _hf_weights, write_llama_gguf

    path = tmp_path / "notok.gguf"
    write_llama_gguf(path, _hf_weights())
    with pytest.raises(ValueError, match="no tokenizer in this GGUF"):
        load_tokenizer(path)


def _tiny_tokenizer_json(folder: pathlib.Path) -> pathlib.Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, "hello": 3, "world": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def test_api_load_tokenizer_accepts_what_the_loader_accepts(tmp_path):
    import yarn_jax

    path = _tiny_tokenizer_json(tmp_path / "tok")
    assert yarn_jax.load_tokenizer(path).encode("hello world") == [3, 4]  # a tokenizer.json
    assert yarn_jax.load_tokenizer(path.parent).encode("world hello") == [4, 3]  # its folder


def test_api_load_tokenizer_errors_name_the_path(tmp_path):
    import yarn_jax

    missing = tmp_path / "nowhere" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match="no such file or folder") as e:
        yarn_jax.load_tokenizer(missing)
    assert str(missing) in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        yarn_jax.load_tokenizer(tmp_path / "empty")


def test_api_load_tokenizer_gguf_without_suffix(smollm2_gguf, ours, tmp_path):
    import yarn_jax

    link = tmp_path / "smollm2-model"  # a GGUF under a name without .gguf (as hub caches store)
    link.symlink_to(smollm2_gguf)
    assert yarn_jax.load_tokenizer(link).encode("hello 12") == ours.encode("hello 12")
