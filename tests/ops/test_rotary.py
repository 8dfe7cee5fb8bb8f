"""Rotary positions: the fast rotation equals the explicit 2x2 form, and scores depend on offsets only."""
import pytest
import torch

from linmix.ops.rotary import apply_rotary, rotary_angles, rotary_reference


@pytest.mark.parametrize("start", [0, 7, 65_530])
def test_rotation_matches_reference(start):
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(apply_rotary(x, start), rotary_reference(x, start))


def test_rotation_keeps_norms_and_position_zero_is_identity():
    x = torch.randn(1, 2, 6, 16)
    torch.testing.assert_close(apply_rotary(x, 0)[:, :, :1], x[:, :, :1])
    torch.testing.assert_close(apply_rotary(x, 123).norm(dim=-1), x.norm(dim=-1))


@pytest.mark.parametrize("shift", [1, 1000, 60_000])
def test_scores_depend_on_offsets_only(shift):
    q, k = torch.randn(2, 1, 4, 8, dtype=torch.float64), torch.randn(2, 1, 4, 8, dtype=torch.float64)
    near = apply_rotary(q) @ apply_rotary(k).transpose(-1, -2)
    far = apply_rotary(q, shift) @ apply_rotary(k, shift).transpose(-1, -2)
    torch.testing.assert_close(near, far)


def test_rotation_changes_scores_with_the_offset():
    q = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    k = q.clone()
    same = (apply_rotary(q, 5) * apply_rotary(k, 5)).sum()
    apart = (apply_rotary(q, 5) * apply_rotary(k, 9)).sum()
    assert not torch.isclose(same, apart)


def test_odd_head_size_is_an_error():
    with pytest.raises(ValueError, match="even head size"):
        rotary_angles(torch.arange(3), 7)
