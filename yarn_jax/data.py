"""Training data: documents via `datasets`, tokenized, bookended with BOS/EOS, packed into
fixed-length chunks (paper §4.1: PG19 chunked into 64k-token segments bookended with BOS/EOS),
served in a deterministic seeded order whose position is saved in the checkpoint.

Shapes: a chunk is [T] int32, a global batch [B, T]; each host materialises only its rows.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Sequence

import numpy as np

_TEXT_EXT = {".txt", ".text", ".md", ".rst", ".py", ".c", ".h", ""}
_FORMATS = {"text", "json", "parquet"}
# text/json files compressed with these are decompressed by the `datasets` loader
_COMPRESSED_EXT = {".gz", ".bz2", ".xz"}
# extensions that mark a data.source string as a local path (not a hub dataset name)
_PATH_EXT = _TEXT_EXT - {""} | _COMPRESSED_EXT | {".jsonl", ".json", ".parquet", ".csv", ".arrow"}


class ByteTokenizer:
    """Offline byte-level tokenizer: UTF-8 bytes are ids 0..255, BOS = 256, EOS = 257."""

    vocab_size = 258
    bos_token_id = 256
    eos_token_id = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def python_stdlib_files(limit: int | None = None) -> list[str]:
    """Real text present on every machine: the CPython standard library sources (sorted)."""
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    return files[:limit] if limit else files


def _looks_like_path(item: str) -> bool:
    """A local path rather than a hub name: leading / . ~, more than one "/" ("org/name" is a
    hub name), or a data-file extension."""
    return (
        item.startswith(("/", ".", "~"))
        or item.count("/") > 1
        or os.path.splitext(item)[1].lower() in _PATH_EXT
    )


def _visible(path: str, root: str) -> bool:
    """False for dotfiles and anything under a dot-directory below `root`."""
    rel = os.path.relpath(path, root)
    return not any(part.startswith(".") for part in rel.split(os.sep))


def _expand(source: str | Sequence[str]) -> list[str] | None:
    """Local files named by `source` (paths, globs, directories), or None if it is not local.

    A list source is always local: a missing item raises FileNotFoundError naming it, as does
    a single string that looks like a path (leading / ./ ~ or a data-file extension).
    """
    is_list = not isinstance(source, str)
    items = list(source) if is_list else [source]
    files: list[str] = []
    for raw in items:
        item = os.path.expanduser(str(raw))
        if os.path.isdir(item):
            files += sorted(
                p
                for p in glob.glob(os.path.join(item, "**", "*"), recursive=True)
                if os.path.isfile(p) and _visible(p, item)
            )
        elif any(c in item for c in "*?["):
            matched = sorted(glob.glob(item, recursive=True))
            if is_list and not matched:
                raise FileNotFoundError(f"data.source item {raw!r} matches no files")
            files += matched
        elif os.path.isfile(item):
            files.append(item)
        elif is_list or _looks_like_path(item):
            where = f"data.source item {raw!r}" if is_list else f"data.source={raw!r}"
            raise FileNotFoundError(f"{where}: no such file or directory")
        else:
            return None
    return files


def _format_of(path: str) -> str:
    """The format ("json", "parquet" or "text") of a file from its extension; text and json
    files may also end in .gz/.bz2/.xz. Raises ValueError for any other extension."""
    stem, ext = os.path.splitext(path.lower())
    suffix = ext
    if ext in _COMPRESSED_EXT:
        ext = os.path.splitext(stem)[1]
        suffix = ext + suffix
    if ext in (".jsonl", ".json"):
        return "json"
    if ext == ".parquet" and suffix == ext:
        return "parquet"
    if ext in _TEXT_EXT:
        return "text"
    raise ValueError(
        f"data.source file {path!r}: unknown data format for extension {suffix!r} (known: "
        f"text {sorted(_TEXT_EXT - {''})} or no extension, json .json/.jsonl, parquet .parquet; "
        f"text/json may be compressed {sorted(_COMPRESSED_EXT)}). Set data.format to 'text', "
        "'json' or 'parquet' to read it as that, or convert the file (e.g. CSV/Arrow to .jsonl "
        "or .parquet)."
    )


def load_documents(
    source: str | Sequence[str],
    *,
    split: str = "train",
    text_key: str = "text",
    data_format: str = "auto",
    max_documents: int = 0,
    cache_dir: str | None = None,
):
    """A `datasets.Dataset` with one document per row in column `text_key`.

    `source`: local files (paths, globs, a directory; .txt and other text files are one document
    each, .jsonl/.json and .parquet one per record; text/json may be .gz/.bz2/.xz-compressed;
    other extensions need an explicit `data_format`), "python_stdlib" (CPython's own sources),
    or a hub dataset name (needs a reachable hub).
    """
    import datasets

    if source == "python_stdlib":
        source = python_stdlib_files()
    files = _expand(source)
    if files is not None:
        if not files:
            raise FileNotFoundError(f"data.source={source!r} matches no files")
        if data_format == "auto":
            formats = {_format_of(f) for f in files}
            if len(formats) > 1:
                base = source if isinstance(source, str) and os.path.isdir(source) else "dir"
                raise ValueError(
                    f"data.source {source!r} mixes formats {sorted(formats)}; pass a glob such "
                    f"as {os.path.join(base, '*.jsonl')!r} (files of one format)"
                )
            fmt = formats.pop()
        else:
            fmt = data_format
        if fmt not in _FORMATS:
            raise ValueError(f"data.format={fmt!r}; use one of {sorted(_FORMATS)} or 'auto'")
        kwargs = {"sample_by": "document"} if fmt == "text" else {}
        ds = datasets.load_dataset(
            fmt, data_files={split: files}, split=split, cache_dir=cache_dir, **kwargs
        )
    else:
        try:
            ds = datasets.load_dataset(str(source), split=split, cache_dir=cache_dir)
        except Exception as e:  # noqa: BLE001 - re-raised with the context a user needs
            raise ValueError(
                f"data.source={source!r} is neither a local file/glob nor a loadable hub dataset "
                f"({type(e).__name__}: {e}). Without network, point data.source at local "
                ".txt/.jsonl/.parquet files."
            ) from e
    if text_key not in ds.column_names:
        raise ValueError(
            f"data.text_key={text_key!r} not in the dataset columns {ds.column_names} "
            f"(source {source!r})"
        )
    if max_documents:
        ds = ds.select(range(min(max_documents, len(ds))))
    return ds


def _ids(tokenizer, text: str) -> list[int]:
    out = tokenizer.encode(text)
    return list(getattr(out, "ids", out))


def pack_documents(
    ds, tokenizer, seq_len: int, *, text_key: str = "text", bos=True, eos=True, num_proc: int = 0
):
    """Tokenize, bookend each document with BOS/EOS, concatenate and cut into [seq_len] chunks.

    Returns a `datasets.Dataset` with one int32 column "input_ids" of length seq_len. The tail of
    each map batch (< seq_len tokens) is dropped, as in the reference's group_texts.
    """
    import datasets

    bos_id, eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    if (bos and bos_id is None) or (eos and eos_id is None):
        raise ValueError("the tokenizer has no bos/eos token id; set data.bos/data.eos False")

    def group(batch):
        stream: list[int] = []
        for text in batch[text_key]:
            stream += ([bos_id] if bos else []) + _ids(tokenizer, text) + ([eos_id] if eos else [])
        n = len(stream) // seq_len
        arr = np.asarray(stream[: n * seq_len], np.int32).reshape(n, seq_len)
        return {"input_ids": list(arr)}

    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    packed = ds.map(
        group,
        batched=True,
        batch_size=256,
        remove_columns=ds.column_names,
        features=features,
        num_proc=num_proc or None,  # PG19-sized corpora: tokenize in parallel (cached)
        desc="tokenize+pack",
    )
    if len(packed) == 0:
        raise ValueError(
            f"the data yields no full chunk of seq_len={seq_len} tokens; add documents or "
            "lower data.seq_len"
        )
    return packed.with_format("numpy")


class BatchIterator:
    """Deterministic, resumable global batches over packed chunks.

    The stream is epoch after epoch of a permutation drawn from (seed, epoch); batch i holds
    stream positions [i*B, (i+1)*B). This process materialises only rows
    [p*B/P, (p+1)*B/P) of each batch. `state()` is saved in the checkpoint.
    """

    def __init__(
        self,
        chunks,
        global_batch: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if global_batch % process_count:
            raise ValueError(
                f"batch_size={global_batch} is not divisible by the {process_count} processes"
            )
        self.chunks = chunks
        self.n = len(chunks)
        self.global_batch = global_batch
        self.seed = int(seed)
        self.rows = slice(
            process_index * global_batch // process_count,
            (process_index + 1) * global_batch // process_count,
        )
        self.position = 0
        self._perm_cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            self._perm_cache = {
                epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)
            }
        return self._perm_cache[epoch]

    def batch_indices(self, i: int) -> np.ndarray:
        """Global chunk indices of batch i, [B]."""
        pos = np.arange(i * self.global_batch, (i + 1) * self.global_batch)
        return np.asarray([self._perm(int(p // self.n))[p % self.n] for p in pos])

    def fingerprint(self) -> str:
        first = np.asarray(self.chunks[0]["input_ids"]).tobytes()
        return hashlib.sha1(first + str(self.n).encode()).hexdigest()[:16]

    def state(self) -> dict:
        return {
            "position": int(self.position),
            "seed": self.seed,
            "num_chunks": self.n,
            "global_batch": self.global_batch,
            "fingerprint": self.fingerprint(),
        }

    def restore(self, state: dict) -> None:
        mine = self.state()
        diff = [
            k
            for k in ("seed", "num_chunks", "global_batch", "fingerprint")
            if state.get(k) != mine[k]
        ]
        if diff:
            raise ValueError(
                "the checkpoint's data iterator does not match this data: "
                + ", ".join(f"{k}: saved {state.get(k)!r} vs now {mine[k]!r}" for k in diff)
                + ". Resume with the same data config, or start a fresh workdir."
            )
        self.position = int(state["position"])

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        idx = self.batch_indices(self.position)[self.rows]
        order = np.argsort(idx)  # arrow reads sorted indices faster
        rows = np.asarray(self.chunks[idx[order]]["input_ids"], np.int32)
        out = np.empty_like(rows)
        out[order] = rows
        self.position += 1
        return out
