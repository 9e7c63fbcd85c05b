"""Evaluation documents: the bundled long texts, or the user's files / `datasets` data.

`--data` accepts plain text files (one document per file: .txt, .md, .py, ...), directories of
them, `.jsonl` / `.json` / `.parquet` / `.csv` files (read with `datasets`, one document per row,
text in `text_field`), or a `datasets` name (`name` or `name:config`, split `split`).

A file's document is named by its path relative to the common root of the local `--data` items
(a directory is its own root, a file its parent): `notes.txt` alone, `a/notes.txt` and
`b/notes.txt` from one directory; a table's rows are `path-without-suffix[i]`. Two documents with
one name are an error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"
_TABLE_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclasses.dataclass
class Document:
    name: str
    kind: str
    text: str
    ids: np.ndarray | None = None  # int32 [n_tokens], filled by tokenize()
    source: str = ""


def _abs(path: pathlib.Path) -> pathlib.Path:
    """Absolute and normalised, without following symlinks (names stay under their root)."""
    return pathlib.Path(os.path.abspath(path))


def bundled_manifest() -> list[dict]:
    return json.loads((DATA_DIR / "manifest.json").read_text())


def bundled_documents(names: Sequence[str] | None = None) -> list[Document]:
    """The bundled documents (manifest order), or those named, in the order named."""
    manifest = {m["name"]: m for m in bundled_manifest()}
    if names:
        unknown = [n for n in names if n not in manifest]
        if unknown:
            raise ValueError(
                f"Unknown bundled document(s) {unknown}; bundled: {', '.join(manifest)}"
            )
        entries = [manifest[n] for n in names]
    else:
        entries = list(manifest.values())
    return [
        Document(m["name"], m["kind"], (DATA_DIR / m["file"]).read_text(encoding="utf-8"),
                 source=f"{m['source']} ({m['version']}, {m['licence']})")
        for m in entries
    ]  # fmt: skip


def _read_table(path: pathlib.Path, text_field: str, label: str) -> list[Document]:
    """One document per row, named `label[i]` (label: the path without suffix, see _label)."""
    import datasets

    builder = _TABLE_SUFFIXES[path.suffix.lower()]
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as e:  # datasets raises many types for a malformed file
        raise ValueError(f"{path}: could not read it as {builder} ({type(e).__name__}: {e})") from e
    if text_field not in ds.column_names:
        raise ValueError(
            f"{path}: no column {text_field!r} (columns: {ds.column_names}); pass --text-field"
        )
    return [
        Document(f"{label}[{i}]", "data", str(t), source=str(path))
        for i, t in enumerate(ds[text_field])
    ]


def _read_hub(name: str, split: str, text_field: str) -> list[Document]:
    import datasets

    repo, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(repo, config or None, split=split)
    except Exception as e:
        raise ValueError(
            f"--data {name!r} is not a file or directory here, and loading it as a `datasets` "
            f"name failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Pass text files, a .jsonl/.parquet file, or a dataset that is reachable."
        ) from e
    if text_field not in ds.column_names:
        raise ValueError(f"dataset {name!r}: no column {text_field!r} (has {ds.column_names})")
    return [
        Document(f"{repo}[{i}]", "data", str(t), source=name) for i, t in enumerate(ds[text_field])
    ]


def load_documents(
    data: Sequence[str] | None,
    names: Sequence[str] | None = None,
    text_field: str = "text",
    split: str = "test",
) -> list[Document]:
    """Documents from `data` (see module docstring); the bundled set when `data` is empty."""
    if not data:
        return bundled_documents(names)
    # Resolve every item first: files are named by their path relative to the common root of the
    # local --data items (a directory is its own root, a file its parent), so a/notes.txt and
    # b/notes.txt stay two documents with two names.
    items: list[tuple[str, list[pathlib.Path] | None, pathlib.Path | None]] = []
    for item in data:
        path = pathlib.Path(item).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not files:
                raise ValueError(f"--data {item}: the directory holds no files")
            items.append((item, [_abs(f) for f in files], _abs(path)))
        elif path.is_file():
            items.append((item, [_abs(path)], _abs(path).parent))
        elif path.suffix.lower() in _TABLE_SUFFIXES or path.suffix.lower() in (".txt", ".md"):
            raise FileNotFoundError(f"--data {item}: no such file")
        else:
            items.append((item, None, None))  # a `datasets` name
    roots = [r for _, _, r in items if r is not None]
    root = pathlib.Path(os.path.commonpath(roots)) if roots else None
    docs: list[Document] = []
    for item, files, _ in items:
        if files is None:
            docs.extend(_read_hub(item, split, text_field))
            continue
        for f in files:
            rel = f.relative_to(root).as_posix()
            if f.suffix.lower() in _TABLE_SUFFIXES:
                docs.extend(_read_table(f, text_field, rel[: len(rel) - len(f.suffix)]))
            else:
                try:
                    text = f.read_text(encoding="utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"--data {f}: not UTF-8 text ({e})") from e
                docs.append(Document(rel, "data", text, source=str(f)))
    seen: dict[str, list[str]] = {}
    for d in docs:
        seen.setdefault(d.name, []).append(d.source)
    dups = {n: s for n, s in seen.items() if len(s) > 1}
    if dups:
        listed = "; ".join(f"{n!r} from {', '.join(s)}" for n, s in list(dups.items())[:10])
        if len(dups) > 10:
            listed += f"; and {len(dups) - 10} more"
        raise ValueError(
            f"--data: several documents have the same name ({listed}): each document needs its "
            "own name; pass each file or dataset once"
        )
    empty = [d.name for d in docs if not d.text.strip()]
    if empty:
        raise ValueError(f"--data: empty document(s) {empty}: remove them or pass other files")
    if not docs:
        raise ValueError(f"--data {list(data)}: no documents found")
    if names:
        by_name = {d.name: d for d in docs}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"--documents {missing} not in --data (have {list(by_name)[:20]})")
        docs = [by_name[n] for n in names]
    return docs


def tokenize(docs: Sequence[Document], tokenizer, progress: bool = True) -> list[Document]:
    """Fill `ids` with the tokenizer's encoding of each text (its default special tokens)."""
    from tqdm.auto import tqdm

    for doc in tqdm(docs, desc="tokenizing", unit="doc", disable=not progress):
        doc.ids = np.asarray(encode_ids(tokenizer, doc.text), np.int32)
    return list(docs)


def encode_ids(tokenizer, text: str) -> list[int]:
    """`text` as a list of token ids, encoded once: accepts a tokenizer whose encode returns a
    list or an object with `.ids` (tokenizers.Encoding). Called with encode's defaults: for
    yarn_jax's Tokenizer that is without special tokens, so no BOS is prepended (SmolLM2's
    tokenizer adds none either way)."""
    ids = tokenizer.encode(text)
    return list(getattr(ids, "ids", ids))
