"""Shared checks for the conversion tests: causality, untouched models, tiny transformers models."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def assert_causal(fn: Callable[[torch.Tensor], torch.Tensor], inp: torch.Tensor, vocab: int | None = None,
                  time_dim: int = 1) -> None:
    """Changing every input after position t never changes an output at or before t (for every t).

    ``inp`` holds token ids (``vocab`` given: later ids are redrawn) or float features (later ones are
    replaced by noise); ``fn`` maps it to outputs whose time axis is ``time_dim`` like the input's.
    """
    with torch.no_grad():
        base = fn(inp)
        T = inp.shape[time_dim]
        for t in range(T - 1):
            changed = inp.clone()
            later = [slice(None)] * inp.dim()
            later[time_dim] = slice(t + 1, None)
            if vocab is not None:
                changed[tuple(later)] = torch.randint(0, vocab, changed[tuple(later)].shape)
            else:
                changed[tuple(later)] = torch.randn_like(changed[tuple(later)]) * 10
            out = fn(changed)
            upto = [slice(None)] * base.dim()
            upto[time_dim] = slice(0, t + 1)
            torch.testing.assert_close(out[tuple(upto)], base[tuple(upto)], rtol=0, atol=1e-9,
                                       msg=f"an output at position <= {t} changed when later inputs changed")
            assert not torch.allclose(out, base), "changing later inputs changed nothing: the check is vacuous"


def snapshot(model: nn.Module) -> tuple[dict[str, type], dict[str, torch.Tensor]]:
    """Module classes by path and cloned parameters by name: compare before and after a failed convert."""
    return ({p: type(m) for p, m in model.named_modules()},
            {n: t.detach().clone() for n, t in model.state_dict().items()})


def assert_unchanged(model: nn.Module, before: tuple[dict[str, type], dict[str, torch.Tensor]]) -> None:
    kinds, state = snapshot(model)
    assert kinds == before[0], "a failed conversion changed the model's modules"
    assert state.keys() == before[1].keys() and all(torch.equal(state[k], before[1][k]) for k in state)


def grads_by_name(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters()}


def tiny_gpt2(**overrides):
    from transformers import GPT2Config, GPT2LMHeadModel

    values = dict(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=64, attn_pdrop=0.0,
                  resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    values.update(overrides)
    return GPT2LMHeadModel(GPT2Config(**values)).eval()


def tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=64, vocab_size=50, max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
    values.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**values)).eval()
