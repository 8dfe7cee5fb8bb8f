"""The passkey-retrieval generator: layout, targets, depth placement, determinism, config errors."""
from __future__ import annotations

import pytest
import torch

from linmix.data.synthetic import PasskeyConfig, digit_accuracy, make_passkey
from linmix.data.synthetic.passkey import FILLER0, IGNORE, KEY_TOKEN, QUERY_TOKEN, key_position


def test_worked_example():
    cfg = PasskeyConfig(n_filler=4)
    x, y = make_passkey(cfg, 1, 16, depth=0.0, seed=3)
    seq, key = x[0].tolist(), x[0, 1:6].tolist()
    # depth 0: KEY at 0, then the 5 digits; 16 - 11 = 5 filler tokens; QUERY and the 4 first digits close it
    assert seq[0] == KEY_TOKEN and all(0 <= d <= 9 for d in key)
    assert all(FILLER0 <= t < FILLER0 + 4 for t in seq[6:11])
    assert seq[11] == QUERY_TOKEN and seq[12:] == key[:4]
    assert y[0].tolist() == [IGNORE] * 11 + key  # targets: the 5 key digits after the query marker
    assert cfg.vocab_size == FILLER0 + 4 == 16 and int(x.max()) < 16


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0, None])
def test_targets_only_at_the_key_digits_and_key_stated_once_before(depth):
    cfg = PasskeyConfig()
    L = 64
    x, y = make_passkey(cfg, 8, L, depth=depth, seed=1)
    assert x.shape == y.shape == (8, L) and x.dtype == y.dtype == torch.long
    assert ((y != IGNORE).sum(1) == 5).all() and (y[:, :-5] == IGNORE).all()
    for i in range(8):
        key = y[i, -5:]
        assert x[i, -5] == QUERY_TOKEN and torch.equal(x[i, -4:], key[:4])
        assert (x[i] == KEY_TOKEN).sum() == 1 and (x[i] == QUERY_TOKEN).sum() == 1
        at = int((x[i] == KEY_TOKEN).nonzero())
        assert torch.equal(x[i, at + 1: at + 6], key)
        if depth is not None:
            assert at == key_position(cfg, L, depth)
        # outside the key block and the closing query, only filler
        rest = torch.cat([x[i, :at], x[i, at + 6: L - 5]])
        assert ((rest >= FILLER0) & (rest < cfg.vocab_size)).all()


def test_depth_extremes():
    cfg = PasskeyConfig()
    x0, _ = make_passkey(cfg, 2, 100, depth=0.0, seed=0)
    x1, _ = make_passkey(cfg, 2, 100, depth=1.0, seed=0)
    assert (x0[:, 0] == KEY_TOKEN).all()
    assert (x1[:, 100 - 5 - 6] == KEY_TOKEN).all()  # the key block ends right before the query marker
    xm, _ = make_passkey(cfg, 1, 100, depth=0.5, seed=0)
    assert int((xm[0] == KEY_TOKEN).nonzero()) == round(0.5 * (100 - 11))


def test_deterministic_by_seed_and_sentence_filler():
    a = make_passkey(PasskeyConfig(), 4, 50, None, seed=7)
    b = make_passkey(PasskeyConfig(), 4, 50, None, seed=7)
    c = make_passkey(PasskeyConfig(), 4, 50, None, seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and not torch.equal(a[0], c[0])
    cfg = PasskeyConfig(filler="sentence", sentence_len=5)
    x, _ = make_passkey(cfg, 1, 60, depth=1.0, seed=0)
    assert torch.equal(x[0, :5], cfg.sentence()) and torch.equal(x[0, 5:10], cfg.sentence())


def test_digit_accuracy_counts_only_targets():
    x, y = make_passkey(PasskeyConfig(), 2, 20, 0.5, seed=0)
    logits = torch.zeros(2, 20, 28)
    logits[0, -5:].scatter_(1, y[0, -5:, None], 1.0)  # sequence 0 all right, sequence 1 all wrong (argmax 0)
    wrong = (y[1, -5:] == 0).sum().item()
    assert digit_accuracy(logits, y) == pytest.approx((5 + wrong) / 10)


@pytest.mark.parametrize("kwargs, call, message", [
    ({"key_digits": 0}, {}, "key_digits"),
    ({"n_filler": 0}, {}, "n_filler"),
    ({"filler": "lorem"}, {}, "filler must be"),
    ({"filler": "sentence", "n_filler": 4, "sentence_len": 9}, {}, "sentence_len"),
    ({}, {"length": 11}, "length must be an integer >= 12"),
    ({}, {"depth": 1.5}, "depth must lie in"),
    ({}, {"n": 0}, "n (sequences)"),
])
def test_bad_config_errors(kwargs, call, message):
    args = {"n": 1, "length": 32, "depth": 0.5, "seed": 0} | call
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_passkey(PasskeyConfig(**kwargs), **args)
