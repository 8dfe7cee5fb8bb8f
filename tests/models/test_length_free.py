"""Length-free models: no table sized by max_len anywhere, so they read and generate past max_len.

A model is length-free when its positional scheme is "none", "rotary" or "sinusoidal" and every mixer is
(:attr:`linmix.mixers.Mixer.length_free`). Built with max_len=32, such a model generates 200 tokens after a
32-token prompt, and every decoding step's logits equal the parallel forward over all 232 tokens. A model
with a learned table keeps max_len as a hard bound, with an error that names what ties it and the fix.
"""
from __future__ import annotations

import pytest
import torch

import linmix
from linmix.cli import main
from linmix.config import ModelConfig
from linmix.data.tokenizers import CharTokenizer

V, MAX_LEN, PROMPT, NEW = 24, 32, 32, 200

LENGTH_FREE = [
    ("summation(positional=false)*2", "none"),
    ("summation(positions=sinusoidal)*2", "none"),
    ("summation(positions=sinusoidal),attention", "sinusoidal"),
    ("linear_attention*2", "none"),
    ("attention*2", "rotary"),
    ("local_attention(window=8)*2", "rotary"),
    ("topological,aggregation", "sinusoidal"),
]


def tiny_lm(layers: str, positional: str, **kw) -> linmix.LanguageModel:
    torch.manual_seed(0)
    lm = linmix.LanguageModel(V, d_model=16, layers=layers, max_len=MAX_LEN, n_heads=2, positional=positional, **kw)
    with torch.no_grad():  # off the near-identity initialisation, so every piece changes the logits
        for p in lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return lm.double().eval()


@torch.no_grad()
def step_logits(lm: linmix.LanguageModel, ids: torch.Tensor, prompt: int) -> torch.Tensor:
    """Logits at every position from ``prompt - 1`` on, by one prefill and then one step per token."""
    hidden, states = lm.encoder.prefill(ids[:, :prompt])
    out = [lm.head(hidden[:, -1])]
    for t in range(prompt, ids.shape[1]):
        hidden_t, states = lm.encoder.step(ids[:, t], states, t)
        out.append(lm.head(hidden_t))
    return torch.stack(out, 1)


@pytest.mark.parametrize("layers,positional", LENGTH_FREE)
def test_a_length_free_lm_generates_past_max_len_and_steps_equal_the_parallel_forward(layers, positional):
    lm = tiny_lm(layers, positional)
    assert lm.length_free and lm.encoder.length_ties() == []
    prompt = torch.randint(0, V, (2, PROMPT))
    out = lm.generate(prompt, NEW, temperature=0)
    assert out.shape == (2, PROMPT + NEW) and torch.equal(out[:, :PROMPT], prompt)
    with torch.no_grad():
        parallel = lm(out)  # 232 tokens through a model built with max_len=32
    stepped = step_logits(lm, out, PROMPT)
    torch.testing.assert_close(stepped, parallel[:, PROMPT - 1:], rtol=1e-9, atol=1e-9)
    assert torch.equal(out[:, PROMPT:], parallel[:, PROMPT - 1:-1].argmax(-1))  # greedy: each token its argmax


@pytest.mark.parametrize("layers,positional,ties", [
    ("summation*2", "none", ["layers 0, 1 (summation): its learned [max_len, D] position table"]),
    ("linear_attention", "learned", ["positional='learned'"]),
    ("attention,summation", "multiplicative", ["positional='multiplicative'", "layer 1 (summation)"]),
])
def test_a_model_with_a_table_keeps_the_clear_max_len_errors(layers, positional, ties):
    lm = tiny_lm(layers, positional)
    assert not lm.length_free
    with pytest.raises(ValueError, match="exceeds max_len=32") as info:
        lm.generate(torch.randint(0, V, (1, PROMPT)), NEW, temperature=0)
    message = str(info.value)
    for tie in ties:
        assert tie in message
    assert "positional='none', 'rotary' or 'sinusoidal'" in message and "summation(positions=sinusoidal)" in message
    with pytest.raises(ValueError, match="exceeds max_len=32"):
        lm(torch.zeros(1, MAX_LEN + 1, dtype=torch.long))
    _, states = lm.encoder.prefill(torch.zeros(1, MAX_LEN, dtype=torch.long))
    with pytest.raises(ValueError, match="reaches max_len=32"):
        lm.encoder.step(torch.zeros(1, dtype=torch.long), states, MAX_LEN)


def rotary_flags(lm: linmix.LanguageModel) -> list:
    return [getattr(m, "rotary", None) for m in lm.encoder.mixers]


def test_rotary_positional_sets_rotary_only_in_the_mixers_that_take_it():
    layers = "attention,local_attention(window=4),summation(positions=sinusoidal),linear_attention"
    lm = tiny_lm(layers, "rotary")
    assert rotary_flags(lm) == [True, True, None, None]
    assert lm.encoder.pos is None and not any(name.startswith("encoder.pos") for name in lm.state_dict())
    assert rotary_flags(tiny_lm(layers, "none")) == [False, False, None, None]


def test_an_explicit_rotary_option_wins_over_the_positional_scheme():
    assert rotary_flags(tiny_lm("attention(rotary=false),attention", "rotary")) == [False, True]
    lm = tiny_lm("attention,local_attention", "rotary", mixer_options={"attention": {"rotary": False}})
    assert rotary_flags(lm) == [False, True]
    assert lm.length_free  # attention without rotary has no table either: still length-free


def test_sinusoidal_embedding_has_no_parameters_and_depends_on_the_position():
    lm = tiny_lm("linear_attention", "sinusoidal")
    assert lm.encoder.pos is None
    ids = torch.full((1, 3), 5)
    x = lm.encoder.embed_tokens(ids)
    assert not torch.allclose(x[0, 0], x[0, 1])
    far = lm.encoder.embed_tokens(ids[:, :1], offset=65_536)
    assert torch.isfinite(far).all() and (far - lm.encoder.embed(ids[:, :1])).abs().max() <= 0.02 * 2 ** 0.5 + 1e-12


def test_unknown_positional_is_a_one_line_error_listing_the_choices():
    with pytest.raises(ValueError) as info:
        ModelConfig(positional="alibi", vocab_size=V).resolved()
    message = str(info.value)
    assert "\n" not in message and "'alibi'" in message
    assert "learned, multiplicative, none, rotary, sinusoidal" in message


@pytest.mark.parametrize("layers,positional", [("summation(positions=sinusoidal),attention", "rotary"),
                                               ("linear_attention,local_attention(window=4)", "sinusoidal")])
def test_save_and_load_keep_the_length_free_options(tmp_path, layers, positional):
    lm = tiny_lm(layers, positional).float()
    path = lm.save_pretrained(tmp_path / "m")
    loaded = linmix.LanguageModel.from_pretrained(path).eval()
    assert loaded.config == lm.config and loaded.config.positional == positional and loaded.config.layers == layers
    assert loaded.length_free and rotary_flags(loaded) == rotary_flags(lm)
    prompt = torch.randint(0, V, (1, 5))
    assert torch.equal(loaded.generate(prompt, 60, temperature=0), lm.generate(prompt, 60, temperature=0))


def test_linmix_sample_goes_past_max_len_for_a_length_free_model(tmp_path, capsys):
    tokenizer = CharTokenizer.train("hello world, a short text\n")
    torch.manual_seed(0)
    lm = linmix.LanguageModel(tokenizer.vocab_size, d_model=16, layers="summation(positions=sinusoidal),attention",
                              max_len=8, n_heads=2, positional="rotary").eval()
    lm.save_pretrained(tmp_path / "ckpt")
    tokenizer.save(tmp_path / "ckpt")
    code = main(["sample", "--checkpoint", str(tmp_path / "ckpt"), "--prompt", "hello", "--max-new-tokens", "40",
                 "--temperature", "0", "--no-prompt-echo"])
    out = capsys.readouterr().out
    assert code == 0
    prompt = torch.tensor([tokenizer.encode("hello")])
    whole = lm.generate(prompt, 40, temperature=0)  # one stream of 45 tokens: no window, no re-prefill
    assert out == tokenizer.decode(whole[0, 5:].tolist()) + "\n"
