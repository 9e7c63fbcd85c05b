"""Mesh sizes and the logical-axis rule table (no devices needed: sizes are passed in)."""

import pytest
from jax.sharding import PartitionSpec as P

from yarn_jax import sharding as shd


def test_mesh_shape_rest_axis():
    assert shd.mesh_shape(data=2, fsdp=-1, tensor=2, num_devices=8) == {
        "data": 2,
        "fsdp": 2,
        "tensor": 2,
    }
    assert shd.mesh_shape(data=-1, fsdp=1, tensor=1, num_devices=8)["data"] == 8
    assert shd.mesh_shape(data=1, fsdp=4, tensor=2, num_devices=8)["fsdp"] == 4


@pytest.mark.parametrize(
    "sizes, match",
    [
        ({"data": 1, "fsdp": -1, "tensor": 3}, "does not divide 8"),
        ({"data": 2, "fsdp": 2, "tensor": 1}, "there are 8 devices"),
        ({"data": -1, "fsdp": -1, "tensor": 1}, "at most one axis"),
        ({"data": 0, "fsdp": -1, "tensor": 1}, "positive or -1"),
    ],
)
def test_mesh_shape_errors(sizes, match):
    with pytest.raises(ValueError, match=match):
        shd.mesh_shape(**sizes, num_devices=8)


def test_rules_map_logical_axes():
    mesh = {"data": 2, "fsdp": 2, "tensor": 2}
    # q_proj [D, N, H]: embed over fsdp, heads over tensor, head_dim replicated
    assert shd.logical_to_pspec(("embed", "q_heads", "head_dim"), (64, 4, 16), mesh) == P(
        "fsdp", "tensor", None
    )
    assert shd.logical_to_pspec(("norm",), (64,), mesh) == P(None)
    assert shd.logical_to_pspec(("batch", "length"), (8, 128), mesh) == P(("data", "fsdp"), None)
    assert shd.logical_to_pspec(None, (3, 3), mesh) == P()


def test_non_dividing_dim_is_replicated():
    mesh = {"data": 1, "fsdp": 4, "tensor": 4}
    # vocab 258 does not divide tensor=4 -> replicated; embed 64 divides fsdp=4
    assert shd.logical_to_pspec(("vocab", "embed"), (258, 64), mesh) == P(None, "fsdp")
    # 3 kv heads on tensor=4: replicated (SmolLM2 has 3 kv heads)
    assert shd.logical_to_pspec(("embed", "kv_heads", "head_dim"), (576, 3, 64), mesh) == P(
        "fsdp", None, None
    )
    # batch 6 on data*fsdp=4 -> replicated
    assert shd.logical_to_pspec(("batch", "length"), (6, 8), mesh) == P(None, None)


def test_size_one_axes_are_not_named_and_axis_used_once():
    mesh = {"data": 1, "fsdp": 1, "tensor": 8}
    assert shd.logical_to_pspec(("embed", "mlp"), (64, 256), mesh) == P(None, "tensor")
    # two dims that both map to tensor: only the first gets it
    assert shd.logical_to_pspec(("q_heads", "kv_heads"), (8, 8), mesh) == P("tensor", None)


def test_shard_shape():
    mesh = {"data": 2, "fsdp": 2, "tensor": 2}
    assert shd.shard_shape((64, 4, 16), P("fsdp", "tensor", None), mesh) == (32, 2, 16)
    assert shd.shard_shape((8, 128), P(("data", "fsdp"), None), mesh) == (2, 128)


def test_unknown_logical_axis():
    with pytest.raises(ValueError, match="unknown logical axis 'heads'"):
        shd.logical_to_pspec(("heads",), (4,), {"tensor": 2})


def test_check_batch():
    mesh = {"data": 2, "fsdp": 2, "tensor": 2}
    shd.check_batch(8, mesh, grad_accum=2)
    with pytest.raises(ValueError, match="batch_size=6 must be divisible by data\\*fsdp=4"):
        shd.check_batch(6, mesh)
    with pytest.raises(ValueError, match="grad_accum=4"):
        shd.check_batch(8, mesh, grad_accum=4)
