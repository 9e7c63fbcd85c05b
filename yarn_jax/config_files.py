"""Recipe files (configs/*.py) are loaded by path, as `train.py --config FILE` does.

A recipe is a Python file with `get_config(arg=None)`; it is not part of a package, so recipes
that build on another recipe, tests and notebooks all load it through `load_config`.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib


def load_config(path: str | os.PathLike, arg: str | None = None):
    """`get_config(arg)` (or `get_config()` when arg is None) of the recipe file at `path`."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such config file (expected configs/<recipe>.py)")
    spec = importlib.util.spec_from_file_location(f"yarn_jax_config_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if arg is None else module.get_config(arg)


def sibling(config_file: str | os.PathLike, name: str, arg: str | None = None):
    """The config of recipe `name` in the same folder as `config_file` (pass `__file__`)."""
    return load_config(pathlib.Path(config_file).resolve().parent / f"{name}.py", arg)
