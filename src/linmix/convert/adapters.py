"""Modules that put a linmix mixer where an attention module was, keeping the host's calling convention.

A converted layer is called exactly as the attention it replaces (same arguments, same return tuple), so
the residuals, norms and feed-forwards around it run unchanged. What the adapters translate:

* :class:`MultiheadAttentionAdapter` (``torch.nn.MultiheadAttention``): ``(query, key, value,
  key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal)``, ``batch_first`` either
  way, returning ``(out, None)``. Causal means ``is_causal=True`` or an ``attn_mask`` that hides exactly
  the future (bool ``True`` or ``-inf`` above the diagonal); any other ``attn_mask`` is an error.
  ``key_padding_mask`` (``True`` / ``-inf`` = padding) becomes linmix's ``padding_mask`` (``True`` = real).
* :class:`HFAttentionAdapter` (transformers' ``GPT2Attention``, ``LlamaAttention``): the module's forward
  keywords (``hidden_states``, ``attention_mask``, ``position_ids``, ``position_embeddings``, the cache
  under any of its names, ``use_cache``, ``output_attentions``, ``cache_position``, ...), returning
  ``(out, None)`` as transformers 5 expects of both. The 4-D attention mask must be causal plus key
  padding (that is read back as ``padding_mask``). There is no KV cache: a cache passed in is an error,
  and :func:`linmix.convert` turns ``use_cache`` off in the model's config, so generation recomputes the
  prefix at every step. Inside :class:`linmix.convert.hf_decode.StreamingSession` the adapter instead
  hands each call to its ``stream`` (the mixer's prefill, then one step per token, from a held state).

A mixer's outputs at padded positions are zero, where attention would leave some value: padded positions
never reach a real output either way.
"""
from __future__ import annotations

import torch
from torch import nn

from linmix.mixers.base import Mixer


def _hidden(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor, True where a torch-style mask hides the entry (bool True, or a -inf/very negative float)."""
    if mask.dtype == torch.bool:
        return mask
    if not mask.is_floating_point():
        raise ValueError(f"masks must be bool or float, got {mask.dtype}")
    hidden = mask < torch.finfo(mask.dtype).min / 2
    if not torch.all(hidden | (mask == 0)):
        raise ValueError("a float mask holds values other than 0 and -inf (an additive bias); converted layers "
                         "take masks that only hide entries")
    return hidden


def torch_mask_is_causal(attn_mask: torch.Tensor | None, T: int, where: str) -> bool:
    """Whether a ``torch.nn.MultiheadAttention`` ``attn_mask`` (``[T, T]`` or ``[B*H, T, T]``) hides exactly
    the future (True) or nothing (False); anything else is a ``ValueError`` naming ``where``."""
    if attn_mask is None:
        return False
    hidden = _hidden(attn_mask)
    if hidden.shape[-2:] != (T, T):
        raise ValueError(f"{where}: attn_mask has shape {list(attn_mask.shape)}, expected [{T}, {T}] "
                         "for self-attention")
    future = torch.ones(T, T, dtype=torch.bool, device=hidden.device).triu(1)
    if torch.equal(hidden, future.expand_as(hidden)):
        return True
    if not hidden.any():
        return False
    raise ValueError(f"{where}: attn_mask is neither causal nor empty; a converted attention layer takes only a "
                     "causal attn_mask (or is_causal=True) and key_padding_mask for padding")


class MultiheadAttentionAdapter(nn.Module):
    """A linmix mixer behind ``torch.nn.MultiheadAttention``'s calling convention (self-attention only).

    ``batch_first``, ``embed_dim`` and ``num_heads`` mirror the replaced module; ``in_proj_bias`` is None and
    ``_qkv_same_embed_dim`` False so that ``nn.TransformerEncoderLayer``'s fused fast path (which reads the
    old projection weights directly) is never taken.
    """

    _qkv_same_embed_dim = False
    in_proj_weight = None
    in_proj_bias = None

    def __init__(self, mixer: Mixer, path: str, batch_first: bool, num_heads: int) -> None:
        super().__init__()
        self.mixer = mixer
        self.path, self.batch_first = path, bool(batch_first)
        self.embed_dim, self.num_heads = mixer.d_model, num_heads

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        """Mix ``query`` (``[B, T, D]`` with ``batch_first``, else ``[T, B, D]``; or unbatched ``[T, D]``);
        returns ``(out, None)``: attention weights do not exist here."""
        if not (key is query or torch.equal(key, query)) or not (value is query or torch.equal(value, query)):
            raise ValueError(f"{self.path}: a converted attention layer is self-attention only; call it with "
                             "key and value equal to query")
        unbatched = query.dim() == 2
        x = query.unsqueeze(1 if not self.batch_first else 0) if unbatched else query
        if not self.batch_first:
            x = x.transpose(0, 1)
        causal = bool(is_causal) or torch_mask_is_causal(attn_mask, x.shape[1], self.path)
        if causal != self.mixer.causal:
            wanted = "causal" if causal else "bidirectional"
            raise ValueError(f"{self.path}: called {wanted} but converted with causal={self.mixer.causal}; "
                             f"convert again with causal={causal}")
        padding = None
        if key_padding_mask is not None:
            pad = _hidden(key_padding_mask).reshape(x.shape[0], x.shape[1])
            padding = None if not pad.any() else ~pad
        y = self.mixer(x, padding_mask=padding)
        if not self.batch_first:
            y = y.transpose(0, 1)
        return (y.squeeze(1 if not self.batch_first else 0) if unbatched else y), None


def hf_padding(mask: torch.Tensor | None, T: int, where: str) -> torch.Tensor | None:
    """linmix's ``padding_mask`` (True = real) from a transformers 4-D causal mask ``[B, 1|H, T, T]``
    (bool True = attend, or float 0 = attend); None when nothing is padded.

    A query sees itself exactly when it is real. Rows of padded queries may be fully hidden or (a fix some
    kernels need) fully open; every real query's row must be "keys up to me, real keys only", anything else
    (packed sequences, a sliding window, a cache) is a ``ValueError`` naming ``where``.
    """
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4:
        raise ValueError(f"{where}: expected a 4-D attention mask tensor, got "
                         f"{type(mask).__name__ if not isinstance(mask, torch.Tensor) else list(mask.shape)}")
    if mask.shape[-2:] != (T, T):
        raise ValueError(f"{where}: attention mask covers {mask.shape[-1]} keys for {T} queries; converted layers "
                         "keep no cache, run the model with use_cache=False")
    allowed = mask if mask.dtype == torch.bool else mask == 0
    allowed = allowed[:, 0]
    if mask.shape[1] > 1 and not torch.equal(mask == mask[:, :1], torch.ones_like(mask, dtype=torch.bool)):
        raise ValueError(f"{where}: the attention mask differs between heads; converted layers take one per batch")
    index = torch.arange(T, device=allowed.device)
    opened = allowed.all(-1) & (index < T - 1)  # a padded query row opened up: it sees the future
    real = allowed[:, index, index] & ~opened
    causal = index[None, :] <= index[:, None]
    expected = causal[None] & real[:, None, :]
    if not torch.equal(allowed[real], expected[real]):
        raise ValueError(f"{where}: the attention mask is not causal masking plus key padding (packed sequences "
                         "or a sliding window?); converted layers support only that")
    return None if bool(real.all()) else real


class HFAttentionAdapter(nn.Module):
    """A linmix mixer behind a transformers attention module's forward (GPT-2, Llama).

    ``arg_names`` are the host forward's parameter names in order, so positional arguments land where the
    host would put them. ``layer_idx`` mirrors the host for code that reads it. Returns ``(out, None)``.
    ``output_attentions`` gives no weights (there are none).
    """

    is_causal = True
    #: set by :mod:`linmix.convert.hf_decode` while it decodes: ``stream(adapter, x, kwargs) -> y`` (None: off)
    stream = None

    def __init__(self, mixer: Mixer, path: str, arg_names: tuple[str, ...], layer_idx: int | None) -> None:
        super().__init__()
        self.mixer = mixer
        self.path, self.arg_names, self.layer_idx = path, tuple(arg_names), layer_idx

    def forward(self, *args, **kwargs) -> tuple[torch.Tensor, None]:
        if len(args) > len(self.arg_names):
            raise ValueError(f"{self.path}: got {len(args)} positional arguments, the replaced module takes "
                             f"{len(self.arg_names)}: {', '.join(self.arg_names)}")
        for name, value in zip(self.arg_names, args):
            if name in kwargs:
                raise ValueError(f"{self.path}: {name} given both by position and by keyword")
            kwargs[name] = value
        x = kwargs.get("hidden_states")
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"{self.path}: hidden_states must be a [B, T, D] tensor")
        if kwargs.get("encoder_hidden_states") is not None:
            raise ValueError(f"{self.path}: a converted layer is self-attention only; encoder_hidden_states "
                             "cannot be mixed in")
        if self.stream is not None:  # streaming decode: the mixer's state stands in for the prefix
            return self.stream(self, x, kwargs), None
        for name in ("cache", "past_key_value", "past_key_values", "layer_past"):
            if kwargs.get(name) is not None:
                raise ValueError(f"{self.path}: a converted layer keeps no KV cache; run the model with "
                                 "use_cache=False (generation then recomputes the prefix each step), or decode "
                                 "with linmix.convert.generate_streaming")
        padding = hf_padding(kwargs.get("attention_mask"), x.shape[1], self.path)
        if getattr(self.mixer, "rotary", False):
            check_positions(kwargs.get("position_ids"), padding, self.path)
        return self.mixer(x, padding_mask=padding), None


def check_positions(position_ids: torch.Tensor | None, padding: torch.Tensor | None, where: str) -> None:
    """Rotary mixers rotate by token index; that equals the model's rotary positions up to a shift (which
    rotary scores ignore) when the real tokens' ``position_ids`` count up by one. Else a ``ValueError``."""
    if position_ids is None or position_ids.shape[-1] < 2:
        return
    steps = position_ids.diff(dim=-1) == 1
    if padding is not None:
        steps = steps | ~(padding[:, 1:] & padding[:, :-1])
    if not bool(steps.all()):
        raise ValueError(f"{where}: position_ids do not count up by one over the real tokens (packed sequences?); "
                         "a converted rotary layer positions tokens by their index")
