"""Streaming greedy decoding for Hugging Face GPT-2 / Llama models converted by :func:`linmix.convert`.

A converted model runs with ``use_cache=False``, so ``model.generate`` re-runs the whole prefix for every
new token: O(T^2) work for mixers whose point is O(1) or O(w) per decoded token. Here the prompt goes
through the model once (each converted layer's mixer ``prefill``s it) and every new token goes through
alone (each mixer ``step``s from the state it holds), with explicit ``position_ids`` so that GPT-2's
position table and Llama's rotary embeddings see the true positions.

* :class:`StreamingSession` (a context manager) switches every :class:`HFAttentionAdapter` of the model
  into streaming mode and holds its mixer's state; leaving the ``with`` block, normally or by an
  exception, switches them back and drops every state.
* Layers kept as softmax attention (``convert(..., keep=...)``) decode through transformers' own cache: a
  :class:`~transformers.cache_utils.Cache` whose kept layers are ``DynamicLayer`` KV caches and whose
  converted layers are ``DummyLayer`` placeholders (they hold nothing; the mixer's state is elsewhere), so
  the masks transformers builds are sized by the kept layers' true key count. A transformers without
  ``DummyLayer`` gets a ``ValueError`` naming the kept layers.
* Prompts must be unpadded and of equal length: a mixer state has no notion of a padded slot, so an
  ``attention_mask`` with zeros is an error, never a silently wrong answer.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from linmix.convert.adapters import HFAttentionAdapter
from linmix.mixers.base import MixerState
from linmix.mixers.registry import MIXERS

#: fallback for ``model.generate``, quoted by the errors below
GENERATE = "use model.generate(..., use_cache=False) instead"


def mixer_name(mixer: nn.Module) -> str:
    """The registered name of ``mixer``'s class (its class name when it is not registered)."""
    return next((name for name in MIXERS if MIXERS[name] is type(mixer)), type(mixer).__name__)


def converted_adapters(model: nn.Module) -> list[tuple[str, HFAttentionAdapter]]:
    """Every converted HF attention layer of ``model`` with its path; ``ValueError`` when there is none."""
    found = [(path, m) for path, m in model.named_modules() if isinstance(m, HFAttentionAdapter)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no layer converted by linmix.convert from Hugging Face "
                         "GPT-2/Llama attention; streaming decode needs one (convert the model first)")
    return found


def check_streamable(adapters: list[tuple[str, HFAttentionAdapter]]) -> None:
    """``ValueError`` naming the first converted layer whose mixer has no causal streaming form."""
    for path, adapter in adapters:
        mixer = adapter.mixer
        if not (mixer.supports_streaming and mixer.causal):
            why = "is bidirectional" if not mixer.causal else "has no streaming decode (supports_streaming=False)"
            raise ValueError(f"{path}: mixer {mixer_name(mixer)!r} {why}, so it cannot decode token by token; "
                             f"{GENERATE}")
        if adapter.stream is not None:
            raise ValueError(f"{path}: a streaming session is already open on this model; close it first")


def kept_attention(model: nn.Module) -> dict[int, str]:
    """``{layer_idx: path}`` of the HF self-attention layers left as softmax attention (``keep=``).

    Cross-attention is refused: a streaming session decodes a decoder-only model.
    """
    from linmix.convert.hf import _classes

    classes = tuple((_classes() or {}).values())
    kept = {}
    for path, module in model.named_modules():
        if not classes or not isinstance(module, classes):
            continue
        if getattr(module, "is_cross_attention", False):
            raise ValueError(f"{path}: cross-attention (an encoder-decoder GPT-2) is not supported by streaming "
                             f"decode; {GENERATE}")
        if getattr(module, "layer_idx", None) is None:
            raise ValueError(f"{path}: a kept attention layer without layer_idx cannot index a KV cache; {GENERATE}")
        kept[int(module.layer_idx)] = path
    return kept


def kept_layer_cache(kept: dict[int, str]) -> Any:
    """transformers' cache with a KV layer for each kept attention layer and ``DummyLayer`` elsewhere (None
    when nothing is kept); ``ValueError`` naming the kept layers when transformers has no ``DummyLayer``."""
    if not kept:
        return None
    try:
        from transformers.cache_utils import Cache, DummyLayer, DynamicLayer
    except ImportError:
        import transformers

        raise ValueError(f"layers {', '.join(kept.values())} were kept as softmax attention and need a KV cache, "
                         f"which transformers {transformers.__version__} cannot hold beside converted layers (no "
                         f"cache_utils.DummyLayer); {GENERATE}") from None
    return Cache(layers=[DynamicLayer() if i in kept else DummyLayer() for i in range(max(kept) + 1)])


def cache_argument(model: nn.Module) -> str:
    """The name under which ``model.forward`` takes its cache (``cache`` in recent transformers 5)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def check_open_mask(mask: Any, where: str) -> None:
    """``ValueError`` unless a 4-D attention mask lets the last query see every key (no padded key)."""
    if not isinstance(mask, torch.Tensor):
        return
    allowed = mask if mask.dtype == torch.bool else mask == 0
    if allowed.dim() != 4 or not bool(allowed[..., -1, :].all()):
        raise ValueError(f"{where}: streaming decode got an attention mask with padding; it takes unpadded, "
                         f"equal-length prompts ({GENERATE} for padded ones)")


class LayerStream:
    """One converted layer's decode state while a session is open: its first call prefills, later calls step.

    Installed as the adapter's ``stream``; every call checks that the tokens it is given continue the
    ones already consumed (``position_ids``, batch size), so a stray full-prefix call inside the session
    is an error rather than a state fed twice.
    """

    def __init__(self, path: str, session: StreamingSession) -> None:
        self.path, self.session = path, session
        self.state: MixerState | None = None
        self.batch = 0

    def __call__(self, adapter: HFAttentionAdapter, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        """The mixer's output for ``x: [B, T, D]``, the tokens following those this layer has seen."""
        check_open_mask(kwargs.get("attention_mask"), self.path)
        pos = 0 if self.state is None else self.state.pos
        self.check_positions(kwargs.get("position_ids"), pos, x.shape[1])
        if self.state is None:
            y, self.state = adapter.mixer.prefill(x)
            self.batch = x.shape[0]
            return y
        if x.shape[0] != self.batch:
            raise ValueError(f"{self.path}: the session decodes {self.batch} sequences, got a batch of {x.shape[0]}")
        ys = []
        for t in range(x.shape[1]):
            y_t, self.state = adapter.mixer.step(x[:, t], self.state)
            ys.append(y_t)
        return torch.stack(ys, dim=1)

    def check_positions(self, position_ids: Any, pos: int, T: int) -> None:
        """``ValueError`` unless ``position_ids`` (when given) are ``pos .. pos + T - 1`` in every row."""
        if not isinstance(position_ids, torch.Tensor):
            return
        expected = torch.arange(pos, pos + T, device=position_ids.device)
        if position_ids.shape[-1] != T or not bool((position_ids == expected).all()):
            raise ValueError(f"{self.path}: streaming decode expected position_ids {pos}..{pos + T - 1} (the tokens "
                             "after those this layer has consumed); call the model only through the session")


class StreamingSession:
    """Incremental forwards of a converted HF model: ``with StreamingSession(model) as s: s.forward(ids)``.

    The first :meth:`forward` is the prefill (the prompt, ``[B, T]``), each later one continues it (usually
    one token, ``[B, 1]``); every converted layer keeps its mixer's state and kept softmax layers their KV
    cache in between. Leaving the block (also by an exception) drops every state and restores the
    adapters' ordinary full-sequence behaviour. A forward that fails leaves the states half-updated, so
    the session refuses further forwards.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.adapters = converted_adapters(model)
        check_streamable(self.adapters)
        self.kept = kept_attention(model)
        self.cache_arg = cache_argument(model)
        self.streams: dict[str, LayerStream] = {}
        self.cache: Any = None
        self.pos, self.broken, self.active = 0, False, False

    def __enter__(self) -> StreamingSession:
        if self.active:
            raise ValueError("this streaming session is already open")
        check_streamable(self.adapters)
        self.cache = kept_layer_cache(self.kept)  # may raise: then nothing is installed yet
        for path, adapter in self.adapters:
            self.streams[path] = adapter.stream = LayerStream(path, self)
        self.active, self.pos, self.broken = True, 0, False
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Switch the adapters back to full-sequence mode and drop every state (idempotent)."""
        for _, adapter in self.adapters:
            stream = adapter.__dict__.get("stream")
            if isinstance(stream, LayerStream) and stream.session is self:
                del adapter.__dict__["stream"]  # back to the class default, None
        self.streams, self.cache, self.active = {}, None, False

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, V]`` for ``input_ids: [B, T]``, the tokens following everything fed so far."""
        if not self.active:
            raise ValueError("the streaming session is not open; use it as `with StreamingSession(model) as s:`")
        if self.broken:
            raise ValueError("an earlier forward of this streaming session failed and left its states "
                             "inconsistent; open a new session")
        B, T = input_ids.shape
        positions = torch.arange(self.pos, self.pos + T, device=input_ids.device).expand(B, T)
        kwargs: dict[str, Any] = {"position_ids": positions, "use_cache": self.cache is not None}
        if self.cache is not None:
            kwargs[self.cache_arg] = self.cache
        try:
            logits = self.model(input_ids=input_ids, **kwargs).logits
        except BaseException:
            self.broken = True
            raise
        self.pos += T
        return logits

    def state_bytes(self) -> int:
        """Bytes held now: every converted layer's mixer state plus the kept layers' KV cache."""
        total = sum(s.state.nbytes() for s in self.streams.values() if s.state is not None)
        for layer in getattr(self.cache, "layers", []):
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                total += t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0
        return total


def streaming_state_bytes(model: nn.Module) -> int:
    """Bytes of decode state the open :class:`StreamingSession` on ``model`` holds (e.g. after a prefill)."""
    for _, adapter in converted_adapters(model):
        if isinstance(adapter.stream, LayerStream):
            return adapter.stream.session.state_bytes()
    raise ValueError("no streaming session is open on this model; measure inside `with StreamingSession(model):`")


def check_prompt(model: nn.Module, input_ids: Any, max_new_tokens: Any, attention_mask: Any) -> None:
    """``ValueError`` for prompts streaming decode cannot take: not ``[B, T]`` token ids, padded, too long."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] < 1 \
            or input_ids.is_floating_point():
        shape = list(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a [B, T] tensor of token ids with T >= 1, got {shape}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if attention_mask is not None:
        if tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"attention_mask must have the shape of input_ids {list(input_ids.shape)}, "
                             f"got {list(attention_mask.shape)}")
        padded = (attention_mask == 0).any(-1).nonzero().flatten().tolist()
        if padded:
            raise ValueError(f"prompts {padded} are padded (attention_mask has zeros); streaming decode takes "
                             f"unpadded, equal-length prompts ({GENERATE}, or decode them one by one)")
    limit = getattr(getattr(model, "config", None), "n_positions", None)  # GPT-2's learned position table
    last = input_ids.shape[1] + max_new_tokens - 1
    if isinstance(limit, int) and last > limit:
        raise ValueError(f"prompt of {input_ids.shape[1]} tokens plus {max_new_tokens} new ones needs {last} "
                         f"positions; the model has n_positions={limit}")


@torch.no_grad()
def generate_streaming(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int, eos_id: int | None = None,
                       *, attention_mask: torch.Tensor | None = None,
                       return_logits: bool = False, on_token: Callable[[int], None] | None = None,
                       ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding of a converted HF model from its mixers' states: one prefill, one token per forward.

    Args:
        model: a GPT-2 / Llama causal LM converted by :func:`linmix.convert` (kept softmax layers decode
            through a KV cache); its training mode is left as it is (call ``model.eval()`` for dropout off).
        input_ids: ``[B, T]`` prompts, all of length ``T`` and unpadded.
        max_new_tokens: tokens to append (fewer when every row has emitted ``eos_id``).
        eos_id: a row that emits it is finished; its later tokens are ``eos_id`` too (as ``generate`` with
            ``pad_token_id=eos_id``).
        attention_mask: only checked: any zero (a padded prompt) is a ``ValueError``.
        return_logits: also return the logits each new token was chosen from, ``[B, n_new, V]``.
        on_token: called as ``on_token(i)`` once new token ``i`` is chosen (after the forward that gave
            its logits, before the next one), inside the session: it may time the steps or read
            :func:`streaming_state_bytes` (the states then cover the prompt and the tokens before ``i``).

    Returns:
        ``[B, T + n_new]`` token ids (prompt first), as greedy ``model.generate(..., use_cache=False)`` gives,
        with ``(ids, logits)`` when ``return_logits``.
    """
    check_prompt(model, input_ids, max_new_tokens, attention_mask)
    tokens, scores = [input_ids], []
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    with StreamingSession(model) as session:
        logits = session.forward(input_ids)[:, -1] if max_new_tokens else None
        for i in range(max_new_tokens):
            scores.append(logits)
            nxt = logits.argmax(-1)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done = done | (nxt == eos_id)
            tokens.append(nxt[:, None])
            if on_token is not None:
                on_token(i)
            if i + 1 == max_new_tokens or bool(done.all()):
                break
            logits = session.forward(nxt[:, None])[:, -1]
    ids = torch.cat(tokens, dim=1)
    if not return_logits:
        return ids
    empty = input_ids.new_zeros(input_ids.shape[0], 0, 0, dtype=torch.float32)
    return ids, torch.stack(scores, dim=1) if scores else empty
