"""Hugging Face checkpoints <-> yarn_jax Llama parameters.

Import reads a folder with `model.safetensors`, sharded safetensors
(`model.safetensors.index.json`) or `pytorch_model*.bin` (torch imported only then), or any
iterator of (HF name, array) such as a GGUF reader. Tensors are streamed one at a time: each is
transformed, cast and placed (on its sharding when a `place` function is given) before the
next is read, so a 7B import never holds two full copies of the weights.

The mapping is one table of regexes from HF key to parameter path plus a transform (bonsai
style). Strict: every source tensor is used and every parameter is filled; all problems
(missing, extra, mis-shaped) are collected and raised as one ValueError naming the source.

Dimension key: D model dim, N query heads, K kv heads, H head dim, M mlp hidden, V vocab.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import re
from collections.abc import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from yarn_jax.model import Llama, LlamaConfig

__all__ = [
    "export_hf",
    "hf_to_params",
    "iter_hf_folder",
    "load_hf_config",
    "load_params",
    "mapping_table",
    "params_to_hf",
]

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

# Buffers some checkpoints carry that hold no parameters (recomputed from the config).
_IGNORED_SOURCE = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")


# -- the mapping table ---------------------------------------------------------------------------
# (HF regex, parameter path template, to_ours(w, cfg), to_hf(p, cfg))


def _t(w, cfg):
    return w.T


def _qkv_in(heads_attr):
    def f(w, cfg):  # [heads*H, D] -> [D, heads, H]
        n = getattr(cfg, heads_attr)
        return w.reshape(n, cfg.head_dim, w.shape[-1]).transpose(2, 0, 1)

    return f


def _qkv_out(w, cfg):  # [D, heads, H] -> [heads*H, D]
    return w.transpose(1, 2, 0).reshape(-1, w.shape[0])


def _o_in(w, cfg):  # [D, N*H] -> [N, H, D]
    return w.T.reshape(cfg.num_attention_heads, cfg.head_dim, w.shape[0])


def _o_out(w, cfg):  # [N, H, D] -> [D, N*H]
    return w.reshape(-1, w.shape[-1]).T


def _bias_in(heads_attr):
    def f(w, cfg):  # [heads*H] -> [heads, H]
        return w.reshape(getattr(cfg, heads_attr), cfg.head_dim)

    return f


def _bias_out(w, cfg):
    return w.reshape(-1)


def _same(w, cfg):
    return w


_L = "model.layers.{0}."
mapping_table: tuple[tuple[str, str, Callable, Callable], ...] = (
    ("model.embed_tokens.weight", "embed/embedding", _same, _same),
    ("model.norm.weight", "norm/scale", _same, _same),
    ("lm_head.weight", "lm_head", _t, _t),
    (_L + "input_layernorm.weight", "layers/{0}/attn_norm/scale", _same, _same),
    (_L + "post_attention_layernorm.weight", "layers/{0}/mlp_norm/scale", _same, _same),
    (
        _L + "self_attn.q_proj.weight",
        "layers/{0}/attn/q_proj",
        _qkv_in("num_attention_heads"),
        _qkv_out,
    ),  # noqa: E501
    (
        _L + "self_attn.k_proj.weight",
        "layers/{0}/attn/k_proj",
        _qkv_in("num_key_value_heads"),
        _qkv_out,
    ),  # noqa: E501
    (
        _L + "self_attn.v_proj.weight",
        "layers/{0}/attn/v_proj",
        _qkv_in("num_key_value_heads"),
        _qkv_out,
    ),  # noqa: E501
    (_L + "self_attn.o_proj.weight", "layers/{0}/attn/o_proj", _o_in, _o_out),
    (
        _L + "self_attn.q_proj.bias",
        "layers/{0}/attn/q_bias",
        _bias_in("num_attention_heads"),
        _bias_out,
    ),  # noqa: E501
    (
        _L + "self_attn.k_proj.bias",
        "layers/{0}/attn/k_bias",
        _bias_in("num_key_value_heads"),
        _bias_out,
    ),  # noqa: E501
    (
        _L + "self_attn.v_proj.bias",
        "layers/{0}/attn/v_bias",
        _bias_in("num_key_value_heads"),
        _bias_out,
    ),  # noqa: E501
    (_L + "self_attn.o_proj.bias", "layers/{0}/attn/o_bias", _same, _same),
    (_L + "mlp.gate_proj.weight", "layers/{0}/mlp/gate_proj", _t, _t),
    (_L + "mlp.up_proj.weight", "layers/{0}/mlp/up_proj", _t, _t),
    (_L + "mlp.down_proj.weight", "layers/{0}/mlp/down_proj", _t, _t),
)
"""(HF key template, parameter path template, HF -> ours, ours -> HF); {0} is the layer index."""


def _template_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{0\}", r"(\d+)") + "$")


_HF_RX = [(_template_regex(hf), hf, path, fin, fout) for hf, path, fin, fout in mapping_table]
_PATH_RX = [(_template_regex(path), hf, path, fin, fout) for hf, path, fin, fout in mapping_table]


def _match(key: str):
    """(parameter path, HF -> ours transform) for an HF key, or None."""
    for rx, _, tmpl, fin, _ in _HF_RX:
        m = rx.match(key)
        if m:
            return tmpl.format(*m.groups()), fin
    return None


def _path_str(path) -> str:
    return "/".join(str(p) for p in path)


def _abstract(cfg: LlamaConfig):
    abstract = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = {_path_str(p): v for p, v in nnx.to_flat_state(state)}
    return graphdef, state, flat


# -- reading folders ----------------------------------------------------------------------------


def load_hf_config(folder: str | os.PathLike) -> dict:
    """config.json of an HF folder as a dict (FileNotFoundError / ValueError naming the file)."""
    path = pathlib.Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json; is {folder} a Hugging Face model folder?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); re-download or fix the file") from e


def _index_shards(index: pathlib.Path, kind: str) -> list[pathlib.Path]:
    """The shard files a `*.index.json` names (sorted, each once); errors name the index."""
    try:
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index}: not a valid {kind} index ({e!r})") from e
    missing = [f for f in files if not (index.parent / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{index} names shard files that do not exist: {missing}")
    return [index.parent / f for f in files]


def _safetensors_files(folder: pathlib.Path) -> list[pathlib.Path] | None:
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        return _index_shards(index, "safetensors")
    single = folder / SAFETENSORS_FILE
    if single.is_file():
        return [single]
    others = sorted(folder.glob("*.safetensors"))
    return others or None


def _iter_safetensors(path: pathlib.Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) for each tensor, reopening the file per tensor.

    safe_open maps the whole file; pages a read touches count in the process's memory until
    the map is closed. Measured on SmolLM2 (0.54 GB): one open for all tensors raised the
    import's peak RSS from 0.8 to 1.3 GB; one open per tensor keeps a single tensor mapped.
    """
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415

    def opened():
        try:
            return safe_open(str(path), framework="numpy")
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(
                f"{path}: not a readable safetensors file ({e}); it may be truncated or corrupt: "
                "re-download or re-export it"
            ) from e

    with opened() as f:
        keys = list(f.keys())  # noqa: SIM118 - safe_open has no __iter__
    for key in keys:
        with opened() as f:
            try:
                w = f.get_tensor(key)
            except (SafetensorError, OSError, ValueError) as e:
                raise ValueError(f"{path}: cannot read tensor {key!r} ({e}); file corrupt?") from e
        yield key, w


def _iter_bin(path: pathlib.Path) -> Iterator[tuple[str, np.ndarray]]:
    try:
        import torch  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            f"{path} is a PyTorch checkpoint: reading it needs torch (pip install -e "
            "'.[torch-bin]', which pins torch==2.13.0), or convert it to safetensors first"
        ) from e
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    for key in list(sd):
        t = sd.pop(key)
        if t.dtype == torch.bfloat16:
            t = t.float()
        yield key, t.numpy()


def iter_hf_folder(folder: str | os.PathLike) -> tuple[str, Iterator[tuple[str, np.ndarray]]]:
    """(description of the source, iterator of (HF name, numpy array)) for an HF folder."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    st = _safetensors_files(folder)
    if st:

        def gen():
            for p in st:
                yield from _iter_safetensors(p)

        return ", ".join(str(p) for p in st), gen()
    index = folder / BIN_INDEX
    if index.is_file():
        bins = _index_shards(index, "checkpoint")
    else:
        bins = [pathlib.Path(p) for p in sorted(glob.glob(str(folder / "pytorch_model*.bin")))]
    if not bins:
        raise FileNotFoundError(
            f"{folder}: no weights found (looked for {SAFETENSORS_FILE}, {SAFETENSORS_INDEX}, "
            f"*.safetensors, {BIN_INDEX}, pytorch_model*.bin)"
        )

    def gen_bin():
        for p in bins:
            yield from _iter_bin(p)

    return ", ".join(str(p) for p in bins), gen_bin()


# -- import ---------------------------------------------------------------------------------------


def hf_to_params(
    cfg: LlamaConfig,
    tensors: Iterable[tuple[str, np.ndarray]],
    *,
    source: str,
    place: Callable[[np.ndarray, tuple | None, str], jax.Array] | None = None,
) -> Llama:
    """Build a Llama from a stream of HF state-dict tensors (strict; see the module docstring).

    place(array, logical_axes, param_path) -> jax.Array puts one converted tensor on its device /
    sharding; default: `jnp.asarray` on the default device. Arrays are cast to cfg.param_dtype.
    """
    graphdef, state, flat = _abstract(cfg)
    pdtype = cfg.jnp_param_dtype
    filled: dict[str, jax.Array] = {}
    problems: list[str] = []
    tied_head = None
    for key, w in tensors:
        if _IGNORED_SOURCE.match(key):
            continue
        rule = _match(key)
        if rule is None:
            problems.append(f"unexpected tensor {key!r} {tuple(w.shape)} (no parameter takes it)")
            continue
        path, fin = rule
        if path == "lm_head" and cfg.tie_word_embeddings:
            tied_head = (key, w.shape)  # a tied checkpoint may store the shared matrix twice
            continue
        var = flat.get(path)
        if var is None:
            problems.append(f"tensor {key!r} maps to {path!r}, which this config does not have")
            continue
        if path in filled:
            problems.append(f"tensor {key!r} given twice (parameter {path!r})")
            continue
        want = tuple(var.shape)
        try:
            x = np.asarray(fin(np.asarray(w), cfg))
        except ValueError:
            x = None
        if x is None or tuple(x.shape) != want:
            problems.append(
                f"tensor {key!r} has shape {tuple(w.shape)}, which does not fit parameter "
                f"{path!r} of shape {want} (check the config: heads, head_dim, sizes)"
            )
            continue
        names = _logical(var)
        x = x.astype(np.float32) if x.dtype.kind != "f" else x
        if place is None:
            filled[path] = jnp.asarray(x, dtype=pdtype)
        else:
            filled[path] = place(x.astype(jnp.dtype(pdtype)), names, path)
        del x, w
    if tied_head is not None and tied_head[1] != flat["embed/embedding"].shape:
        problems.append(f"tied {tied_head[0]!r} has shape {tied_head[1]}, unlike the embedding")
    missing = sorted(set(flat) - set(filled), key=_natural)
    if missing:
        problems.append(f"missing tensors for parameters {missing}")
    if problems:
        raise ValueError(
            f"{source}: checkpoint does not match the config ({len(problems)} problems):\n  - "
            + "\n  - ".join(problems)
        )
    for path_tuple, var in nnx.to_flat_state(state):
        var.set_value(filled[_path_str(path_tuple)])
    return nnx.merge(graphdef, state)


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _logical(var) -> tuple | None:
    meta = var.get_metadata() if hasattr(var, "get_metadata") else {}
    names = meta.get("out_sharding")
    return tuple(names) if names else None


def load_params(
    folder: str | os.PathLike,
    cfg: LlamaConfig | None = None,
    *,
    dtype: str = "float32",
    param_dtype: str | None = None,
    place=None,
) -> Llama:
    """Import an HF folder (config.json + safetensors / sharded / .bin) into a Llama."""
    folder = pathlib.Path(folder)
    if cfg is None:
        cfg = LlamaConfig.from_hf(
            load_hf_config(folder), dtype=dtype, param_dtype=param_dtype,
            source=str(folder / CONFIG_FILE),
        )  # fmt: skip
    source, it = iter_hf_folder(folder)
    return hf_to_params(cfg, it, source=source, place=place)


# -- export ---------------------------------------------------------------------------------------


def _hf_name(path: str):
    for rx, hf, _, _, fout in _PATH_RX:
        m = rx.match(path)
        if m:
            return hf.format(*m.groups()), fout
    raise ValueError(f"no HF name for parameter {path!r}")  # the table covers every parameter


def params_to_hf(model: Llama) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, numpy array in the parameter dtype) for every parameter, one at a time."""
    cfg = model.cfg
    _, state = nnx.split(model)
    for path_tuple, var in nnx.to_flat_state(state):
        key, fout = _hf_name(_path_str(path_tuple))
        yield key, np.ascontiguousarray(fout(np.asarray(jax.device_get(var[...])), cfg))


def export_hf(
    model: Llama,
    out_dir: str | os.PathLike,
    *,
    rope_form: str = "v5",
    max_shard_bytes: int = 4 * 2**30,
) -> pathlib.Path:
    """Write config.json, generation_config.json and safetensors (sharded with an index when
    the weights exceed `max_shard_bytes`). Shards are written as they fill: at most one shard
    of host copies is held at a time."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = model.cfg.to_hf(rope_form=rope_form)
    # Plan the shards from shapes, so file names can say "of N" before anything is copied.
    _, state = nnx.split(model)
    plan, size = [[]], 0
    for path_tuple, var in nnx.to_flat_state(state):
        nbytes = int(np.prod(var.shape)) * jnp.dtype(var[...].dtype).itemsize
        if size and size + nbytes > max_shard_bytes:
            plan.append([])
            size = 0
        plan[-1].append(_hf_name(_path_str(path_tuple))[0])
        size += nbytes
    names = (
        [SAFETENSORS_FILE]
        if len(plan) == 1
        else [f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))]
    )
    shard_of = {key: i for i, keys in enumerate(plan) for key in keys}
    weight_map, total = {}, 0
    current, current_i = {}, 0
    for key, arr in params_to_hf(model):
        i = shard_of[key]
        if i != current_i:
            save_file(current, str(out / names[current_i]), metadata={"format": "pt"})
            current, current_i = {}, i
        current[key] = arr
        weight_map[key] = names[i]
        total += arr.nbytes
    save_file(current, str(out / names[current_i]), metadata={"format": "pt"})
    if len(plan) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    gen = {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    return out
