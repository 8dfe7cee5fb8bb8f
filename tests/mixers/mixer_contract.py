"""The mixer contract as test functions over a ``case`` (one mixer class x one option set x causal or not).

``test_registry.py`` runs them on every registered mixer and ``test_toy_mixer.py`` on a mixer defined in the
tests: a module that imports these functions and sets ``MIXER_CLASSES`` (``{name: class}``, registered by the
time the tests run) gets them all; ``conftest.py`` expands ``case`` / ``causal_case`` / ``bidirectional_case``
from it, each class contributing its ``test_grid`` of options. Checks run in float64 at D = 16, so "equal"
means equal to rounding, and padding checks are exact.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
from torch.func import functional_call

from linmix.mixers import Mixer, MixerState, build_mixer

D, MAX_LEN, B = 16, 512, 3
#: (T, mask kind) for the fast == reference check; "ragged" holds a full, a right- and a left-padded row,
#: "empty_row" a fully padded row beside two unpadded ones
LENGTH_MASKS = [(1, "empty_row"), (63, "ragged"), (63, "empty_row"),
                pytest.param(500, "ragged", marks=pytest.mark.slow)]
GARBAGE = {"nan": float("nan"), "inf": float("inf"), "huge": 1e30, "random": None}
TOL = {"rtol": 1e-7, "atol": 1e-9}

__all__ = [
    "test_output_shape_and_dtype", "test_bfloat16_is_close_to_float32", "test_fast_matches_reference",
    "test_padding_garbage_changes_nothing", "test_right_padding_equals_the_unpadded_run", "test_causality",
    "test_step_equals_parallel", "test_prefill_then_step_equals_parallel", "test_state_is_a_copyable_mixer_state",
    "test_decoding_past_max_len_is_a_clear_error", "test_length_free_mixers_run_past_max_len", "test_gradcheck", "test_bad_input_is_a_clear_value_error",
    "test_bidirectional_mixers_refuse_to_stream", "test_input_is_not_mutated",
]


@dataclass(frozen=True)
class Case:
    """One registered mixer built with one option set of its ``test_grid``, causal or bidirectional."""

    name: str
    options: tuple[tuple[str, Any], ...]
    causal: bool

    def __str__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.name}({opts})-{'causal' if self.causal else 'bidir'}"

    def build(self, dtype: torch.dtype = torch.float64, d_model: int = D, max_len: int = MAX_LEN) -> Mixer:
        """The mixer in eval mode, parameters moved off their near-identity init so mixing is visible."""
        torch.manual_seed(1)
        m = build_mixer(self.name, d_model=d_model, max_len=max_len, causal=self.causal, **dict(self.options))
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
        return m.to(dtype).eval()


def cases(classes: dict[str, type[Mixer]]) -> list[Case]:
    """Every (name, option set, causal) the classes support."""
    return [Case(name, tuple(sorted(opts.items())), causal)
            for name, cls in classes.items() for opts in cls.test_grid
            for causal in ((True, False) if cls.supports_causal else (False,))]


def make_mask(kind: str, T: int, batch: int = B) -> torch.Tensor | None:
    """``[batch, T]`` padding masks: right padding of a third, ragged rows, or one row fully padded."""
    if kind == "none":
        return None
    mask = torch.ones(batch, T, dtype=torch.bool)
    pad = T // 3
    if kind == "right":
        mask[:, T - pad:] = False
    elif kind == "ragged":  # row 0 full, row 1 right-padded to half, row 2 left-padded to one token
        mask[1, (T + 1) // 2:] = False
        mask[2, : T - 1] = False
    elif kind == "empty_row":
        mask[0] = False
    else:
        raise ValueError(kind)
    return mask


def inputs(T: int, batch: int = B, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(batch, T, D, dtype=dtype)


def grads(m: Mixer, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of a fixed random projection of ``fn(x)`` wrt ``x`` and every parameter (zeros if unused)."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    weight = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(7))
    wrt = [x, *m.parameters()]
    got = torch.autograd.grad((y * weight).sum(), wrt, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(got, wrt)]


def assert_fast_equals_reference(m: Mixer, T: int, masked: bool = True) -> None:
    """``m(x) == m.reference(x)`` on two sequences, the second left-padded by half when ``masked``."""
    x = torch.randn(2, T, m.d_model, dtype=torch.float64)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, : T // 2] = False
    mask = mask if masked else None
    torch.testing.assert_close(m(x, mask), m.reference(x, mask), atol=1e-10, rtol=1e-10)


def assert_all_close(a: list[torch.Tensor], b: list[torch.Tensor], **tol: float) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, **(tol or TOL))


@torch.no_grad()
def stream(m: Mixer, x: torch.Tensor, state: MixerState) -> tuple[torch.Tensor, MixerState]:
    """Feed ``x: [B, T, D]`` through :meth:`Mixer.step` as decoding does (no autograd, caches written in place);
    return the stacked outputs and the final state."""
    ys = []
    for t in range(x.shape[1]):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    return (torch.stack(ys, 1) if ys else x[:, :0]), state


# ------------------------------------------------------------------------------------------ parallel form
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_output_shape_and_dtype(case: Case, dtype: torch.dtype) -> None:
    m = case.build(dtype)
    assert m.causal is case.causal and m.d_model == D and m.max_len == MAX_LEN
    for mask in (None, make_mask("ragged", 17)):
        y = m(inputs(17, dtype=dtype), padding_mask=mask)
        assert y.shape == (B, 17, D) and y.dtype == dtype
        assert torch.isfinite(y.float()).all()


def test_bfloat16_is_close_to_float32(case: Case) -> None:
    x = inputs(40, dtype=torch.float32)
    y32 = case.build(torch.float32)(x)
    y16 = case.build(torch.bfloat16)(x.bfloat16()).float()
    assert (y16 - y32).abs().max() / y32.abs().max().clamp(min=1.0) < 0.1


@pytest.mark.parametrize("T,mask_kind", LENGTH_MASKS)
def test_fast_matches_reference(case: Case, T: int, mask_kind: str) -> None:
    """Forward and every gradient (input and parameters) of the production form equal the reference's."""
    m = case.build()
    x, mask = inputs(T), make_mask(mask_kind, T)
    torch.testing.assert_close(m(x, mask), m.reference(x, mask), **TOL)
    assert_all_close(grads(m, lambda t: m(t, mask), x), grads(m, lambda t: m.reference(t, mask), x))


@pytest.mark.parametrize("mask_kind", ["ragged", "empty_row"])
def test_padding_garbage_changes_nothing(case: Case, mask_kind: str) -> None:
    """Whatever padded positions hold (left or right), real outputs and all gradients are bit-identical."""
    m = case.build()
    x, mask = inputs(63), make_mask(mask_kind, 63)
    pad = ~mask.unsqueeze(-1)
    clean = [m(x, mask), *grads(m, lambda t: m(t, mask), x)]
    assert (clean[0][~mask] == 0).all() and (clean[1][~mask] == 0).all()
    for fill in GARBAGE.values():
        junk = torch.randn_like(x) * 100 if fill is None else torch.full_like(x, fill)
        dirty_x = torch.where(pad, junk, x)
        dirty = [m(dirty_x, mask), *grads(m, lambda t: m(t, mask), dirty_x)]
        assert_all_close(dirty, clean, rtol=0, atol=0)


def test_right_padding_equals_the_unpadded_run(causal_case: Case) -> None:
    m = causal_case.build()
    x = inputs(63)
    mask = make_mask("right", 63)
    n = int(mask[0].sum())
    torch.testing.assert_close(m(x, mask)[:, :n], m(x[:, :n]), **TOL)


@pytest.mark.parametrize("T", [63, 500])
def test_causality(causal_case: Case, T: int) -> None:
    """Changing inputs after t leaves outputs up to t alone, and does change the output right after t."""
    m = causal_case.build()
    x = inputs(T)
    y = m(x)
    for t in (0, T // 2, T - 2):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 10
        y2 = m(x2)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=1e-10, atol=1e-10)
        assert not torch.allclose(y2[:, t + 1], y[:, t + 1]), "the future must reach the future"


# ----------------------------------------------------------------------------------------- streaming form
@pytest.mark.parametrize("T", [1, 63])
def test_step_equals_parallel(causal_case: Case, T: int) -> None:
    m = causal_case.build()
    x = inputs(T)
    y_step, state = stream(m, x, m.init_state(B))
    torch.testing.assert_close(y_step, m(x), **TOL)
    assert state.pos == T


@pytest.mark.parametrize("T,split", [(63, 31), (63, 63), (500, 495)])
def test_prefill_then_step_equals_parallel(causal_case: Case, T: int, split: int) -> None:
    m = causal_case.build()
    x = inputs(T)
    y = m(x)
    y_pre, state = m.prefill(x[:, :split])
    torch.testing.assert_close(y_pre, y[:, :split], **TOL)
    assert state.pos == split
    y_step, _ = stream(m, x[:, split:], state)
    torch.testing.assert_close(y_step, y[:, split:], **TOL)


def test_state_is_a_copyable_mixer_state(causal_case: Case) -> None:
    """A deep copy branches the decode: stepping the copy leaves the original's continuation unchanged."""
    m = causal_case.build()
    x = inputs(12)
    with torch.no_grad():
        _, state = m.prefill(x[:, :8])
    assert isinstance(state, MixerState) and state.nbytes() > 0
    branch = copy.deepcopy(state)
    y_branch, _ = stream(m, torch.randn_like(x[:, 8:]), branch)
    y_main, _ = stream(m, x[:, 8:], state)
    torch.testing.assert_close(y_main, m(x)[:, 8:], **TOL)
    assert not torch.allclose(y_branch, y_main)


def test_decoding_past_max_len_is_a_clear_error(causal_case: Case) -> None:
    m = causal_case.build(max_len=4)
    if m.length_free:
        pytest.skip("length-free: decoding past max_len is allowed (test_length_free_mixers_run_past_max_len)")
    _, state = m.prefill(inputs(3))
    _, state = m.step(inputs(1)[:, 0], state)
    with pytest.raises(ValueError, match="max_len=4"):
        m.step(inputs(1)[:, 0], state)


def test_length_free_mixers_run_past_max_len(case: Case) -> None:
    """A length-free mixer built with max_len=8 takes 40 tokens in parallel (== reference) and, when causal,
    decodes them by prefill + step with the parallel outputs; the others refuse the 40 tokens."""
    m = case.build(max_len=8)
    x = inputs(40)
    if not m.length_free:
        with pytest.raises(ValueError, match="exceeds max_len=8"):
            m(x)
        return
    y = m(x)
    torch.testing.assert_close(y, m.reference(x), **TOL)
    if case.causal:
        with torch.no_grad():
            y_pre, state = m.prefill(x[:, :5])
        y_step, state = stream(m, x[:, 5:], state)
        torch.testing.assert_close(torch.cat([y_pre, y_step], 1), y, **TOL)
        assert state.pos == 40


def test_bidirectional_mixers_refuse_to_stream(bidirectional_case: Case) -> None:
    m = bidirectional_case.build()
    for call in (lambda: m.init_state(1), lambda: m.prefill(inputs(4)), lambda: m.step(inputs(1)[:, 0], None)):
        with pytest.raises(NotImplementedError):
            call()


# ------------------------------------------------------------------------------------------ the rest
def test_gradcheck(case: Case) -> None:
    """Finite differences agree with autograd, wrt the input and every parameter, with a padded position."""
    m = case.build(d_model=8, max_len=8)
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(1, 5, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, True, False]])
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(inp: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return functional_call(m, dict(zip(names, ps)), (inp,), {"padding_mask": mask})

    assert torch.autograd.gradcheck(f, (x, *params), fast_mode=True)


def test_bad_input_is_a_clear_value_error(case: Case) -> None:
    m = case.build(torch.float32, max_len=32)
    x = torch.randn(1, 4, D)
    bad = [] if m.length_free else [(torch.randn(1, 33, D), None, "exceeds max_len=32")]
    bad += [
        (torch.randn(4, D), None, r"\[B, T, D=16\]"),
        (torch.randn(1, 4, D + 1), None, r"\[B, T, D=16\]"),
        (torch.ones(1, 4, D, dtype=torch.long), None, "floating-point"),
        (x, torch.ones(1, 4), "bool"),
        (x, torch.ones(1, 5, dtype=torch.bool), r"\[B, T\]"),
    ]
    for inp, mask, message in bad:
        for fn in (m, m.reference):
            with pytest.raises(ValueError, match=message):
                fn(inp, padding_mask=mask)
    if case.causal:
        state = m.init_state(1)
        with pytest.raises(ValueError, match=r"\[B, D=16\]"):
            m.step(torch.randn(1, 1, D), state)
        with pytest.raises(ValueError, match="state from init_state"):
            m.step(torch.randn(1, D), {"pos": 0})


def test_input_is_not_mutated(case: Case) -> None:
    m = case.build()
    x = inputs(8)
    before = x.clone()
    m(x, padding_mask=make_mask("ragged", 8))
    assert torch.equal(x, before)
