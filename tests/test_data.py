"""Data pipeline: files -> documents -> BOS/EOS-bookended packed chunks -> seeded batches."""

import bz2
import gzip
import json

import numpy as np
import pytest

from yarn_jax import data

DOCS = [
    "The grass is green. " * 7,
    "def f(x):\n    return x + 1\n" * 5,
    "Ünïcödé bytes count as several tokens. " * 4,
    "short",
    "The sky is blue. " * 11,
]


def _expected_chunks(docs, seq_len):
    # Independent oracle: plain Python bytes, BOS=256, EOS=257, remainder dropped.
    stream = []
    for d in docs:
        stream += [256, *d.encode("utf-8"), 257]
    n = len(stream) // seq_len
    return np.asarray(stream[: n * seq_len]).reshape(n, seq_len)


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS)))
    return path


def test_byte_tokenizer_roundtrip():
    tok = data.ByteTokenizer()
    ids = tok.encode("héllo")
    assert ids == list("héllo".encode())
    assert tok.decode([tok.bos_token_id, *ids, tok.eos_token_id]) == "héllo"


def test_pack_jsonl_matches_oracle(jsonl):
    ds = data.load_documents(str(jsonl))
    assert ds["text"] == DOCS
    chunks = data.pack_documents(ds, data.ByteTokenizer(), 32)
    got = np.stack(chunks["input_ids"])
    np.testing.assert_array_equal(got, _expected_chunks(DOCS, 32))
    batch = next(data.BatchIterator(chunks, global_batch=len(got), seed=0))
    assert batch.dtype == np.int32 and sorted(map(tuple, batch)) == sorted(map(tuple, got))


def test_text_files_are_one_document_each(tmp_path):
    for i, d in enumerate(DOCS):
        (tmp_path / f"doc{i}.txt").write_text(d)
    ds = data.load_documents(str(tmp_path / "doc*.txt"))
    assert len(ds) == len(DOCS)  # sample_by="document": multi-line files stay whole
    assert sorted(ds["text"]) == sorted(DOCS)


def test_parquet(tmp_path, jsonl):
    data.load_documents(str(jsonl)).to_parquet(str(tmp_path / "d.parquet"))
    ds = data.load_documents(str(tmp_path / "d.parquet"))
    assert ds["text"] == DOCS


def test_bad_sources(tmp_path, jsonl):
    with pytest.raises(FileNotFoundError, match="matches no files"):
        data.load_documents(str(tmp_path / "nothing*.jsonl"))
    with pytest.raises(ValueError, match="text_key='body' not in the dataset columns"):
        data.load_documents(str(jsonl), text_key="body")
    with pytest.raises(FileNotFoundError, match="missing_dir'?: no such file"):
        data.load_documents(str(tmp_path / "missing_dir"))  # a path: never tried on the hub
    with pytest.raises(ValueError, match="neither a local file"):
        data.load_documents("no_such_org/no_such_hub_dataset_xyz")
    ds = data.load_documents(str(jsonl))
    with pytest.raises(ValueError, match="no full chunk"):
        data.pack_documents(ds, data.ByteTokenizer(), 100_000)


def test_missing_list_item_or_path_is_named(tmp_path, jsonl):
    missing = str(tmp_path / "gone.jsonl")
    with pytest.raises(FileNotFoundError, match="data.source item '.*gone.jsonl'"):
        data.load_documents([str(jsonl), missing])
    with pytest.raises(FileNotFoundError, match=r"data.source item '.*nope\*.txt' matches no"):
        data.load_documents([str(jsonl), str(tmp_path / "nope*.txt")])
    with pytest.raises(FileNotFoundError, match="data.source='.*gone.jsonl': no such file"):
        data.load_documents(missing)  # path-like: not sent to the hub as a dataset name
    assert data._expand("someorg/some_dataset") is None  # hub names still go to the hub


def test_directory_skips_dotfiles_and_rejects_mixed_formats(tmp_path, jsonl):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "a.jsonl").write_text(jsonl.read_text())
    (d / ".DS_Store").write_bytes(b"\x00\x01binary")
    (d / ".cache").mkdir()
    (d / ".cache" / "x.txt").write_text("not data")
    ds = data.load_documents(str(d))
    assert ds["text"] == DOCS
    (d / "notes.txt").write_text("a text file")
    with pytest.raises(ValueError, match=r"mixes formats \['json', 'text'\].*a glob such as"):
        data.load_documents(str(d))
    assert data.load_documents(str(d / "*.jsonl"))["text"] == DOCS


def test_compressed_json_and_text_are_decompressed(tmp_path, jsonl):
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    assert data.load_documents(str(gz))["text"] == DOCS  # records, not one text document
    for i, d in enumerate(DOCS):
        (tmp_path / f"doc{i}.txt.bz2").write_bytes(bz2.compress(d.encode()))
    assert sorted(data.load_documents(str(tmp_path / "doc*.txt.bz2"))["text"]) == sorted(DOCS)


def test_unknown_extension_is_refused(tmp_path, jsonl):
    csv = tmp_path / "d.csv"
    csv.write_text("text,id\nhello,0\n")
    with pytest.raises(ValueError, match=r"(?s)d\.csv.*'\.csv'.*data\.format.*convert"):
        data.load_documents(str(csv))
    data.load_documents(str(jsonl)).to_parquet(str(tmp_path / "p.parquet"))
    pq_gz = tmp_path / "p.parquet.gz"
    pq_gz.write_bytes(gzip.compress((tmp_path / "p.parquet").read_bytes()))
    with pytest.raises(ValueError, match=r"p\.parquet\.gz.*'\.parquet\.gz'"):
        data.load_documents(str(pq_gz))
    # an explicit data.format still reads any file
    assert data.load_documents(str(csv), data_format="text")["text"] == ["text,id\nhello,0\n"]


def _chunks(n, t=4):
    import datasets

    arr = np.arange(n * t, dtype=np.int32).reshape(n, t)
    feats = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    return datasets.Dataset.from_dict({"input_ids": list(arr)}, features=feats).with_format("numpy")


def test_batches_deterministic_epochs_are_permutations():
    chunks = _chunks(10)
    a = data.BatchIterator(chunks, global_batch=4, seed=3)
    b = data.BatchIterator(chunks, global_batch=4, seed=3)
    c = data.BatchIterator(chunks, global_batch=4, seed=4)
    xs = [next(a) for _ in range(5)]  # 20 chunks = exactly two epochs
    ys = [next(b) for _ in range(5)]
    zs = [next(c) for _ in range(5)]
    np.testing.assert_array_equal(np.stack(xs), np.stack(ys))
    assert not np.array_equal(np.stack(xs), np.stack(zs))
    rows = np.concatenate(xs)[:, 0] // 4  # chunk index from its first token
    assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:]) == list(range(10))
    assert list(rows[:10]) != list(rows[10:])  # a new order each epoch


def test_iterator_state_resumes_and_checks_data():
    chunks = _chunks(10)
    a = data.BatchIterator(chunks, 4, seed=0)
    for _ in range(3):
        next(a)
    saved = json.loads(json.dumps(a.state()))  # what goes into the checkpoint
    expected = next(a)
    b = data.BatchIterator(chunks, 4, seed=0)
    b.restore(saved)
    np.testing.assert_array_equal(next(b), expected)
    with pytest.raises(ValueError, match="num_chunks: saved 10 vs now 12"):
        data.BatchIterator(_chunks(12), 4, seed=0).restore(saved)
    with pytest.raises(ValueError, match="seed"):
        data.BatchIterator(chunks, 4, seed=1).restore(saved)


def test_each_process_loads_its_share():
    chunks = _chunks(10)
    full = next(data.BatchIterator(chunks, 4, seed=7))
    parts = [
        next(data.BatchIterator(chunks, 4, seed=7, process_index=p, process_count=2))
        for p in range(2)
    ]
    assert parts[0].shape == (2, 4)
    np.testing.assert_array_equal(np.concatenate(parts), full)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        data.BatchIterator(chunks, 4, seed=7, process_count=3)
