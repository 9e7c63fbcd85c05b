"""The checkpoint's tokenizer, from a Hugging Face folder or a GGUF file.

    tok = load_tokenizer("path/to/hf_dir")   # tokenizer.json (or what AutoTokenizer reads)
    tok = load_tokenizer("model.gguf")       # tokenizer.ggml.* metadata
    ids = tok.encode("Hello world")          # no special tokens unless add_special_tokens=True
    text = tok.decode(ids)
    tok.save("out/hf_dir")                   # tokenizer.json + tokenizer_config.json

A GGUF file has no tokenizer.json: llama.cpp stores the vocabulary, merges, token types and
special ids as metadata. For byte-level BPE vocabularies (`tokenizer.ggml.model == "gpt2"`: GPT-2,
SmolLM, LLaMA-3, Qwen2, ...) we build the `tokenizers` pipeline here, with the pre-tokenizer
llama.cpp uses for the file's `tokenizer.ggml.pre` (llama-vocab.cpp groups them by regex). Other
vocabulary kinds (SentencePiece "llama", T5 unigram, ...) go through transformers' GGUF
tokenizer converter, which needs no torch.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types (gguf.TokenType)

# tokenizer.ggml.pre values whose pre-tokenizer is GPT-2's regex with every digit split off first
# (llama.cpp: LLAMA_VOCAB_PRE_TYPE_STARCODER group; SmolLM's tokenizer.json has Digits(individual)).
_DIGITS_THEN_GPT2 = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva"}
# ... whose pre-tokenizer is plain GPT-2 byte-level splitting.
_GPT2 = {None, "default", "gpt-2", "gpt2", "mpt", "olmo", "jais", "trillion"}


def _split_regexes() -> dict[str, str]:
    # The LLaMA-3 / Qwen2 / GPT-4o split regexes, keyed by tokenizer.ggml.pre, as transformers
    # spells them (the same strings as the models' tokenizer.json files).
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    return dict(GGUF_PRE_TOKENIZER_SPLITS)


def _byte_level_pre_tokenizer(pre: str | None):
    if pre in _GPT2:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGITS_THEN_GPT2:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    split = _split_regexes().get(pre)
    if split is None:
        return None
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's reversible byte -> printable character table (openai/gpt-2 encoder.py).
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Tokenizer:
    """A `tokenizers.Tokenizer` plus the special tokens a model needs.

    Attributes: `backend` (tokenizers.Tokenizer), `bos_token_id`, `eos_token_id`, `pad_token_id`,
    `vocab_size` (including added tokens), `chat_template`.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        unk_token: str | None = None,
        pad_token: str | None = None,
        add_bos_token: bool = False,
        add_eos_token: bool = False,
        chat_template: str | None = None,
        source: str | None = None,
    ):
        self.backend = backend
        self.bos_token, self.eos_token = bos_token, eos_token
        self.unk_token, self.pad_token = unk_token, pad_token
        self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
        self.chat_template = chat_template
        self.source = source

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; BOS/EOS (as the model adds them) only if add_special_tokens."""
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """`encode` for many texts (parallel in the Rust backend)."""
        out = self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        return [e.ids for e in out]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, bos={self.bos_token!r}, "
            f"eos={self.eos_token!r}, source={self.source!r})"
        )

    def save(self, out_dir: str | os.PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (HF layout)."""
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(out / "tokenizer.json"))
        special = {
            k: v
            for k, v in (
                ("bos_token", self.bos_token),
                ("eos_token", self.eos_token),
                ("unk_token", self.unk_token),
                ("pad_token", self.pad_token),
            )
            if v is not None
        }
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.add_bos_token,
            "add_eos_token": self.add_eos_token,
            "clean_up_tokenization_spaces": False,
            **special,
        }
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")

    def save_pretrained(self, out_dir: str | os.PathLike) -> None:
        """Alias of `save` (the transformers spelling)."""
        self.save(out_dir)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(int(token_id))

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)


# ------------------------------------------------------------------------------------ GGUF
def tokenizer_from_gguf(ckpt_or_path) -> Tokenizer:
    """Build the tokenizer a GGUF file describes (a path or a `GGUFCheckpoint`)."""
    from yarn_jax.convert.gguf import GGUFCheckpoint, read_gguf

    ckpt = ckpt_or_path if isinstance(ckpt_or_path, GGUFCheckpoint) else read_gguf(ckpt_or_path)
    meta = ckpt.metadata
    tokens = meta("tokenizer.ggml.tokens")
    if not tokens:
        raise ValueError(f"{ckpt.path}: no tokenizer in this GGUF (tokenizer.ggml.tokens missing)")
    kind = meta("tokenizer.ggml.model")
    pre = meta("tokenizer.ggml.pre")
    token_types = meta("tokenizer.ggml.token_type") or [1] * len(tokens)

    def token(key: str) -> str | None:
        tid = meta(f"tokenizer.ggml.{key}_token_id")
        return tokens[tid] if tid is not None and 0 <= tid < len(tokens) else None

    pre_tok = _byte_level_pre_tokenizer(pre) if kind == "gpt2" else None
    if pre_tok is not None:
        backend = _byte_level_bpe(ckpt, tokens, token_types, pre_tok)
    else:
        backend = _transformers_gguf_tokenizer(ckpt)
    add_bos = bool(meta("tokenizer.ggml.add_bos_token", kind == "llama"))
    add_eos = bool(meta("tokenizer.ggml.add_eos_token", False))
    bos, eos = token("bos"), token("eos")
    _set_post_processor(backend, bos if add_bos else None, eos if add_eos else None)
    return Tokenizer(
        backend,
        bos_token=bos,
        eos_token=eos,
        unk_token=token("unknown"),
        pad_token=token("padding"),
        add_bos_token=add_bos,
        add_eos_token=add_eos,
        chat_template=meta("tokenizer.chat_template"),
        source=str(ckpt.path),
    )


def _byte_level_bpe(ckpt, tokens, token_types, pre_tok) -> tokenizers.Tokenizer:
    merges = ckpt.metadata("tokenizer.ggml.merges")
    if not merges:
        raise ValueError(f"{ckpt.path}: byte-level BPE vocabulary without tokenizer.ggml.merges")
    spelling = _bytes_to_unicode()
    alphabet = set(spelling.values())
    # GGUF spells ordinary tokens in GPT-2's byte alphabet already; a token written with other
    # characters (e.g. a literal space) is respelled so BPE can reach it.
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        key = t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))
        vocab.setdefault(key, i)
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    bpe = models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False)
    tok = tokenizers.Tokenizer(bpe)
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    special = [
        AddedToken(t, special=True, normalized=False)
        for t, ty in zip(tokens, token_types)
        if ty == _CONTROL and set(t) <= alphabet
    ]
    user = [
        AddedToken(t, special=False, normalized=False)
        for t, ty in zip(tokens, token_types)
        if ty == _USER_DEFINED
    ]
    tok.add_special_tokens(special)
    if user:
        tok.add_tokens(user)
    return tok


def _transformers_gguf_tokenizer(ckpt) -> tokenizers.Tokenizer:
    from transformers.integrations.gguf import convert_gguf_tokenizer, get_gguf_tokenizer

    try:
        arch, tokenizer_dict, _ = get_gguf_tokenizer(str(ckpt.path))
        backend, _ = convert_gguf_tokenizer(arch, tokenizer_dict)
    except (ValueError, KeyError) as e:
        raise ValueError(f"{ckpt.path}: cannot build its tokenizer ({e})") from e
    return backend


def _set_post_processor(backend: tokenizers.Tokenizer, bos: str | None, eos: str | None) -> None:
    """BOS/EOS as the model adds them (used by encode(..., add_special_tokens=True))."""
    if bos is None and eos is None:
        backend.post_processor = None
        return
    parts = ([f"{bos}:0"] if bos else []) + ["$A:0"] + ([f"{eos}:0"] if eos else [])
    pair = parts + [p.replace("$A", "$B").replace(":0", ":1") for p in parts]
    specials = [(t, backend.token_to_id(t)) for t in (bos, eos) if t is not None]
    backend.post_processor = processors.TemplateProcessing(
        single=" ".join(parts), pair=" ".join(pair), special_tokens=specials
    )


# ------------------------------------------------------------------------------------ HF folder
def _token_str(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _read_json(path: pathlib.Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def tokenizer_from_hf_dir(path: str | os.PathLike) -> Tokenizer:
    """Load the tokenizer of a Hugging Face model folder (local files only)."""
    path = pathlib.Path(path)
    cfg = _read_json(path / "tokenizer_config.json")
    special = {**_read_json(path / "special_tokens_map.json"), **cfg}
    model_cfg = _read_json(path / "config.json")
    if (path / "tokenizer.json").is_file():
        backend = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    else:
        try:
            from transformers import AutoTokenizer

            hf_tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            backend = hf_tok.backend_tokenizer
        except Exception as e:
            raise ValueError(
                f"{path}: no tokenizer.json, and transformers could not load a tokenizer from "
                f"this folder ({type(e).__name__}: {e})"
            ) from e
        for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
            special.setdefault(name, getattr(hf_tok, name, None))

    def token(name: str) -> str | None:
        tok = _token_str(special.get(name))
        if tok is None and model_cfg.get(f"{name}_id") is not None:
            tid = model_cfg[f"{name}_id"]
            tid = tid[0] if isinstance(tid, list) else tid
            tok = backend.id_to_token(int(tid))
        return tok

    return Tokenizer(
        backend,
        bos_token=token("bos_token"),
        eos_token=token("eos_token"),
        unk_token=token("unk_token"),
        pad_token=token("pad_token"),
        add_bos_token=bool(cfg.get("add_bos_token", False)),
        add_eos_token=bool(cfg.get("add_eos_token", False)),
        chat_template=cfg.get("chat_template"),
        source=str(path),
    )


def _magic(path: pathlib.Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer of a checkpoint: a Hugging Face folder or a .gguf file."""
    p = pathlib.Path(path)
    if p.is_dir():
        return tokenizer_from_hf_dir(p)
    if p.is_file() and (p.suffix.lower() == ".gguf" or _magic(p) == b"GGUF"):
        return tokenizer_from_gguf(p)
    if p.is_file() and p.name == "tokenizer.json":
        return tokenizer_from_hf_dir(p.parent)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory (expected an HF folder or .gguf)")
    raise ValueError(f"{p}: not a tokenizer source (expected an HF model folder or a .gguf file)")
