"""Device mesh, the one table of logical-axis rules, and shardings derived from it.

The model names logical axes only ("vocab", "embed", "q_heads", "kv_heads", "head_dim", "mlp",
"norm"; activations "batch", "length"). This module maps them onto the mesh axes
(data, fsdp, tensor). A dimension that does not divide its mesh axes is replicated instead of
failing, so one rule table serves every model size and mesh.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# The one table. Parameters are sharded over fsdp (ZeRO-3 style) on their "embed" dimension
# and over tensor on the head / mlp / vocab dimension (Megatron style); the batch goes over
# every data-parallel axis (data and fsdp).
LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
)

BATCH_AXES = ("data", "fsdp")


def mesh_shape(
    data: int = 1, fsdp: int = -1, tensor: int = 1, num_devices: int | None = None
) -> dict[str, int]:
    """Resolve mesh axis sizes; at most one of them may be -1 ("the rest of the devices")."""
    n = jax.device_count() if num_devices is None else num_devices
    sizes = {"data": int(data), "fsdp": int(fsdp), "tensor": int(tensor)}
    rest = [k for k, v in sizes.items() if v == -1]
    bad = [f"{k}={v}" for k, v in sizes.items() if v == 0 or v < -1]
    if bad:
        raise ValueError(f"mesh: axis sizes must be positive or -1, got {', '.join(bad)}")
    if len(rest) > 1:
        raise ValueError(f"mesh: at most one axis may be -1 (the rest), got {sizes}")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if rest:
        if n % fixed:
            raise ValueError(
                f"mesh: {sizes} cannot cover {n} devices: the fixed axes multiply to {fixed}, "
                f"which does not divide {n}. Change config.mesh."
            )
        sizes[rest[0]] = n // fixed
    if math.prod(sizes.values()) != n:
        raise ValueError(
            f"mesh: data*fsdp*tensor = {math.prod(sizes.values())} ({sizes}) but there are "
            f"{n} devices. Make the product equal the device count, or set one axis to -1."
        )
    return sizes


def make_mesh(
    data: int = 1, fsdp: int = -1, tensor: int = 1, devices: Sequence | None = None
) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all), with Auto axis types."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(data, fsdp, tensor, len(devices))
    shape = tuple(sizes[a] for a in MESH_AXES)
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    try:
        return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)
    except Exception:  # noqa: BLE001 - fall back to a plain reshape of the device list
        return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=auto)


def _axis_sizes(mesh: Mesh | Mapping[str, int]) -> dict[str, int]:
    if isinstance(mesh, Mapping):
        return {a: int(mesh.get(a, 1)) for a in MESH_AXES}
    return dict(mesh.shape)


def logical_to_pspec(
    logical_axes: Sequence[str | None] | None,
    shape: Sequence[int],
    mesh: Mesh | Mapping[str, int],
    rules: Sequence[tuple[str, str | tuple[str, ...] | None]] = LOGICAL_RULES,
) -> PartitionSpec:
    """PartitionSpec for one array: logical names -> mesh axes by `rules`.

    A mesh axis is used at most once per array (first dimension wins); a dimension whose size
    is not divisible by the product of its mesh axes is replicated.
    """
    if not logical_axes:
        return PartitionSpec()
    if len(logical_axes) != len(shape):
        raise ValueError(f"logical axes {tuple(logical_axes)} do not match shape {tuple(shape)}")
    table = dict(rules)
    sizes = _axis_sizes(mesh)
    used: set[str] = set()
    spec = []
    for name, dim in zip(logical_axes, shape):
        if name is not None and name not in table:
            raise ValueError(
                f"unknown logical axis {name!r}; known: {sorted(table)} (sharding.LOGICAL_RULES)"
            )
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used and sizes.get(a, 1) > 1)
        if not axes or dim % math.prod(sizes[a] for a in axes):
            spec.append(None)
            continue
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def variable_logical_axes(var) -> tuple | None:
    """The logical axis names an nnx Variable carries (flax 0.12 `out_sharding` metadata)."""
    meta = var.get_metadata() if hasattr(var, "get_metadata") else {}
    for key in ("out_sharding", "sharding_names", "sharding"):
        names = meta.get(key)
        if names:
            return tuple(names)
    return None


def shard_shape(shape: Sequence[int], spec: PartitionSpec, mesh) -> tuple[int, ...]:
    """Per-device shape of an array of `shape` sharded by `spec` on `mesh`."""
    sizes = _axis_sizes(mesh)
    out = []
    for i, dim in enumerate(shape):
        entry = spec[i] if i < len(spec) else None
        axes = (entry,) if isinstance(entry, str) else tuple(entry or ())
        out.append(dim // math.prod(sizes[a] for a in axes) if axes else dim)
    return tuple(out)


def batch_pspec(ndim: int = 2) -> PartitionSpec:
    """Batch arrays [B, T, ...]: B over every data-parallel axis."""
    return PartitionSpec(BATCH_AXES, *([None] * (ndim - 1)))


def batch_shards(mesh: Mesh | Mapping[str, int]) -> int:
    sizes = _axis_sizes(mesh)
    return sizes["data"] * sizes["fsdp"]


def check_batch(global_batch: int, mesh, grad_accum: int = 1) -> None:
    """The global batch must split into `grad_accum` micro-batches, each over the data axes."""
    n = batch_shards(mesh)
    if global_batch % (n * grad_accum):
        raise ValueError(
            f"batch_size={global_batch} must be divisible by data*fsdp={n} times "
            f"grad_accum={grad_accum} (= {n * grad_accum}); change config.batch_size, "
            "config.grad_accum or config.mesh."
        )


def named(mesh: Mesh, tree):
    """Map a pytree of PartitionSpecs to NamedShardings."""
    return jax.tree.map(
        lambda s: NamedSharding(mesh, s), tree, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )
