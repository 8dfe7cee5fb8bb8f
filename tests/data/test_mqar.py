"""MQAR generator: the worked example, where labels sit, what the input reveals, distinct halves, the power
law of the query slots, determinism, the hashed test set, and clear errors."""
from __future__ import annotations

import pytest
import torch

from linmix.data.synthetic.mqar import (IGNORE, MQARConfig, hashed_seed, layout, make_mqar, query_pairs,
                                        test_seed, window_ceiling)

CFG = MQARConfig(vocab_size=64, seq_len=32, num_kv=4, random_filler=False)


def test_the_worked_example_of_the_docstring():
    cfg = MQARConfig(vocab_size=12, seq_len=16, num_kv=2, random_filler=False)
    x, y = layout(cfg, torch.tensor([[2, 4]]), torch.tensor([[8, 7]]), torch.tensor([[2, 0]]))
    assert x[0].tolist() == [2, 8, 4, 7, 4, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
    assert y[0].tolist() == [IGNORE] * 4 + [7] + [IGNORE] * 3 + [8] + [IGNORE] * 7


@pytest.mark.parametrize("random_filler", [False, True])
def test_labels_only_at_queries_and_each_is_the_pair_value(random_filler):
    cfg = MQARConfig(vocab_size=64, seq_len=32, num_kv=4, random_filler=random_filler)
    x, y = make_mqar(cfg, 50, seed=3)
    kv = cfg.num_kv
    for xi, yi in zip(x.tolist(), y.tolist()):
        pairs = {xi[2 * i]: xi[2 * i + 1] for i in range(kv)}
        scored = [t for t in range(cfg.seq_len) if yi[t] != IGNORE]
        assert len(scored) == kv and all(t >= 2 * kv and (t - 2 * kv) % 2 == 0 for t in scored)
        assert sorted(xi[t] for t in scored) == sorted(pairs)  # every key queried exactly once
        assert all(yi[t] == pairs[xi[t]] for t in scored)


def test_the_answer_appears_in_the_input_only_as_the_pair_of_its_key():
    x, y = make_mqar(CFG, 50, seed=4)  # zero filler: nothing can show a value by chance
    for xi, yi in zip(x.tolist(), y.tolist()):
        for q in (t for t in range(CFG.seq_len) if yi[t] != IGNORE):
            seen = [s for s in range(CFG.seq_len) if xi[s] == yi[q]]
            assert len(seen) == 1 and seen[0] < 2 * CFG.num_kv and seen[0] % 2 == 1  # a value slot of the prefix
            assert xi[seen[0] - 1] == xi[q]  # ... right after the queried key
            assert q + 1 == CFG.seq_len or xi[q + 1] == 0  # as in Zoology: not written after the query


def test_keys_and_values_distinct_and_from_their_halves():
    cfg = MQARConfig(vocab_size=40, seq_len=80, num_kv=19)  # 19 of the 19 key ids: the dense draw
    for c in (cfg, MQARConfig(vocab_size=8192, seq_len=64, num_kv=16)):
        x, _ = make_mqar(c, 200, seed=5)
        keys, values = x[:, 0:2 * c.num_kv:2], x[:, 1:2 * c.num_kv:2]
        half = c.vocab_size // 2
        assert int(keys.min()) >= 1 and int(keys.max()) < half
        assert int(values.min()) >= half and int(values.max()) < c.vocab_size
        for row in torch.cat([keys, values], 1).tolist():
            assert len(set(row)) == len(row)


def test_power_law_crowds_queries_early_and_a1_is_uniform():
    def first_tenth(a: float) -> float:  # share of the queries in the first 10% of the slots
        c = MQARConfig(vocab_size=256, seq_len=256, num_kv=4, power_a=a, random_filler=False)
        _, y = make_mqar(c, 400, seed=6)
        slots = ((y != IGNORE).nonzero()[:, 1] - 2 * c.num_kv) // 2
        return float((slots < c.slots // 10).float().mean())

    early, uniform = first_tenth(0.01), first_tenth(1.0)  # about 0.53 and 0.09
    assert early > 0.4 and uniform < 0.15
    p = MQARConfig(power_a=0.01).slot_probs()
    assert abs(float(p.sum()) - 1) < 1e-9 and bool((p[1:] < p[:-1]).all())


def test_deterministic_by_seed_and_the_hashed_test_set_is_stable():
    a, b, c = make_mqar(CFG, 20, 7), make_mqar(CFG, 20, 7), make_mqar(CFG, 20, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert test_seed(CFG) == test_seed(MQARConfig(vocab_size=64, seq_len=32, num_kv=4, random_filler=False))
    assert test_seed(CFG) == 4057260800986484311  # a hash, pinned: the published test set never drifts
    assert test_seed(CFG) != test_seed(MQARConfig(vocab_size=64, seq_len=32, num_kv=8, random_filler=False))
    assert hashed_seed(CFG, "train/seed=0") != test_seed(CFG) != hashed_seed(CFG, "valid")


@pytest.mark.parametrize("kwargs, words", [
    (dict(vocab_size=16, seq_len=64, num_kv=8), "key ids"),
    (dict(vocab_size=8192, seq_len=31, num_kv=8), ">= 4 \\* num_kv"),
    (dict(num_kv=0), "positive integer"),
    (dict(power_a=0.0), "power_a"),
])
def test_bad_configs_are_clear_value_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        MQARConfig(**kwargs)
    with pytest.raises(ValueError, match="number of examples"):
        make_mqar(CFG, -1, 0)


def test_window_ceiling_is_one_for_a_window_of_T_and_matches_a_hand_count():
    x, y = make_mqar(CFG, 30, seed=9)
    assert window_ceiling(x, y, CFG.num_kv, CFG.seq_len) == 1.0
    cfg = MQARConfig(vocab_size=12, seq_len=16, num_kv=2, random_filler=False)
    x, y = layout(cfg, torch.tensor([[2, 4]]), torch.tensor([[8, 7]]), torch.tensor([[2, 0]]))
    # key 2 at 0 (value at 1) queried at 8: distance 7; key 4 at 2 (value at 3) queried at 4: distance 1
    assert query_pairs(x, y, 2) == [[(4, 2), (8, 0)]]
    assert window_ceiling(x, y, 2, 2) == 0.5 and window_ceiling(x, y, 2, 7) == 0.5
    assert window_ceiling(x, y, 2, 8) == 1.0 and window_ceiling(x, y, 2, 1) == 0.0
