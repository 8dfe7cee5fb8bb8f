"""The Q-learning LR controller: the exact Q update, rewards against the baseline, that it acts, stays in its
bounds and is deterministic, its state round trip, and its decision records and LR plot in a real run."""
from __future__ import annotations

import json
import math
import random

import pytest
from train_helpers import TINY_LM

from linmix.cli import main
from linmix.train.qlearning import QLearningLRController
from linmix.train.reporting import read_metrics


def noisy_losses(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [3.0 * math.exp(-i / 300) + 0.05 * rng.random() for i in range(n)]


def plateau_losses(n: int, seed: int) -> list[float]:
    """Falls fast, then sits at 1.0 with minibatch-like noise."""
    rng = random.Random(seed)
    return [1.0 + 2.0 * math.exp(-i / 60) + 0.02 * rng.gauss(0, 1) for i in range(n)]


def scales(controller: QLearningLRController, losses: list[float]) -> list[float]:
    return [controller.update(loss) for loss in losses]


def decisions(controller: QLearningLRController, losses: list[float]) -> list[dict]:
    return [d.to_dict() for d in map(controller.observe, losses) if d is not None]


def test_q_update_on_a_hand_made_sequence_gives_the_exact_table():
    c = QLearningLRController(alpha=0.5, gamma=0.5)
    for state, action, reward, next_state in [(0, 1, 1.0, 1), (1, 2, -0.5, 0), (0, 1, 0.25, 1), (0, 0, 0.5, 0)]:
        c.learn(state, action, reward, next_state)
    # Q[0,1] = .5 (1 + .5*0);  Q[1,2] = .5 (-.5 + .5*.5) = -.125;  Q[0,1] += .5 (.25 + .5*max(0, 0, -.125) - .5)
    # = .375;  Q[0,0] = .5 (.5 + .5*.375) = .34375
    expected = [[0.0] * 3 for _ in range(c.n_states)]
    expected[0] = [0.34375, 0.375, 0.0]
    expected[1] = [0.0, 0.0, -0.125]
    assert c.q == expected


def test_rewards_are_the_loss_decrease_against_the_running_baseline():
    c = QLearningLRController(window=2, epsilon=0.0, epsilon_min=0.0, alpha=0.5, gamma=0.5, baseline_decay=0.5)
    got = decisions(c, [1.0, 1.0, 0.5, 0.5, 0.375, 0.375])
    first, second = got
    # first decision: trend -0.5 (falling fast, scale 1 = high bin), no reward yet, the baseline becomes 0.5
    assert (first["trend"], first["state"], first["reward"], first["factor"]) == (-0.5, 2, None, 1.0)
    # second: decrease 0.25 against the baseline 0.5 -> reward -0.25, paid to (state 2, keep)
    assert (second["trend"], second["reward"]) == (-0.25, -0.25)
    assert c.q[2] == [0.0, -0.125, 0.0] and c.baseline == 0.375
    assert second["factor"] == 1.5  # keep is now worse than the untried actions; raise is closer to 1 than cut


@pytest.mark.parametrize("seed", range(6))
def test_acts_within_50_decisions_on_a_plateau(seed):
    c = QLearningLRController(seed=seed)
    got = decisions(c, plateau_losses(51 * c.window, seed))
    assert len(got) == 50
    assert any(d["scale"] != 1.0 for d in got), "the controller never changed the LR"


def test_acts_greedily_too_without_exploration():
    c = QLearningLRController(epsilon=0.0, epsilon_min=0.0)
    got = decisions(c, plateau_losses(51 * c.window, 0))
    assert not any(d["explored"] for d in got) and len({d["scale"] for d in got}) > 1


def test_scale_stays_in_its_bounds_and_reaches_them():
    c = QLearningLRController(epsilon=1.0, epsilon_decay=1.0, min_scale=0.2, max_scale=1.6, seed=1)
    seen = scales(c, noisy_losses(5000, 3))
    assert all(0.2 <= s <= 1.6 for s in seen)
    assert min(seen) == 0.2 and max(seen) == 1.6
    pinned = QLearningLRController(factors=(3.0,), window=2, epsilon=0.0, epsilon_min=0.0, max_scale=5.0)
    assert max(scales(pinned, [1.0] * 20)) == 5.0


def test_epsilon_decays_to_its_floor():
    c = QLearningLRController(epsilon=0.4, epsilon_decay=0.9, epsilon_min=0.1)
    got = decisions(c, noisy_losses(100 * c.window, 0))
    assert got[0]["epsilon"] == 0.4 and got[1]["epsilon"] == 0.4 * 0.9
    assert got[-1]["epsilon"] == 0.1 and all(a["epsilon"] >= b["epsilon"] for a, b in zip(got, got[1:]))


def test_same_seed_same_decisions_different_seed_differs():
    losses = noisy_losses(2000, 0)
    a = decisions(QLearningLRController(seed=7), losses)
    b = decisions(QLearningLRController(seed=7), losses)
    c = decisions(QLearningLRController(seed=8), losses)
    assert a == b
    assert a != c
    assert len({d["scale"] for d in a}) > 3  # it does act


def test_state_dict_round_trip_continues_identically():
    losses = noisy_losses(1000, 1)
    full = QLearningLRController(seed=3, epsilon=0.5)
    expected = decisions(full, losses)
    first = QLearningLRController(seed=3, epsilon=0.5)
    got = decisions(first, losses[:437])  # mid-window on purpose
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    second = QLearningLRController(seed=999, epsilon=0.5)  # different seed: the state must carry the RNG
    second.load_state_dict(state)
    got += decisions(second, losses[437:])
    assert got == expected
    assert second.q == full.q and second.current_epsilon == full.current_epsilon
    with pytest.raises(ValueError, match="window differs"):
        QLearningLRController(window=20).load_state_dict(state)
    with pytest.raises(ValueError, match="another format"):
        QLearningLRController().load_state_dict({k: v for k, v in state.items() if k != "format"})


def test_trend_and_scale_bins():
    c = QLearningLRController()
    assert [c.trend_bin(t) for t in (-0.05, -0.01, 0.0, 0.01)] == [0, 1, 2, 3]
    assert [c.scale_bin(s) for s in (0.1, 0.5, 1.0, 2.0)] == [0, 1, 2, 2]
    assert c.n_states == 12


def test_untrained_greedy_policy_keeps_the_lr():
    c = QLearningLRController(epsilon=0.0, epsilon_min=0.0)
    assert scales(c, [1.0] * 100)[-1] == 1.0


@pytest.mark.parametrize("seed", range(8))
def test_learns_to_cut_an_lr_that_makes_the_loss_rise(seed):
    # Environment: the loss rises while the LR scale is above 0.5 and falls below it.
    c = QLearningLRController(seed=seed, window=10)
    loss, start = 2.0, 2.0
    noise = random.Random(seed + 100)
    history = []
    for _ in range(600):
        rate = 0.01 * math.tanh(math.log(0.5 / c.scale))
        loss *= (1 - rate) * (1 + 0.001 * noise.gauss(0, 1))
        history.append(c.update(loss))
    late = history[-200:]
    geo_mean = math.exp(sum(math.log(s) for s in late) / len(late))
    assert geo_mean < 0.5, f"the controller kept a harmful LR (scale {geo_mean:.3f})"
    assert loss < start


@pytest.mark.parametrize("options", [{"factors": (0.0, 1.0)}, {"window": 1}, {"epsilon": 0.01},
                                     {"scale_edges": (1.0, 0.5)}, {"gamma": 1.0}, {"min_scale": 2.0}])
def test_bad_options(options):
    with pytest.raises(ValueError):
        QLearningLRController(**options)


def test_unknown_option():
    with pytest.raises(ValueError, match="unknown Q-learning option"):
        QLearningLRController.from_options({"nonsense": 1}, seed=0)


def test_a_controlled_run_logs_its_decisions_and_plots_the_lr(tiny_root, tmp_path):
    out = tmp_path / "q"
    assert main(["train", "lm", "--data-dir", str(tiny_root), "--out", str(out), *TINY_LM, "--steps", "60",
                 "--eval-every", "30", "--log-every", "5", "--lr-controller", "qlearning"]) == 0
    records = read_metrics(out / "metrics.jsonl")
    made = [r for r in records if r["type"] == "lr_decision"]
    # warmup 5 steps, then windows of 10: the first (steps 6-15) is the reference, decisions at 25, 35, 45, 55
    assert [r["step"] for r in made] == [25, 35, 45, 55]
    assert {"step", "state", "action", "factor", "epsilon", "explored", "reward", "scale", "lr"} <= set(made[0])
    assert made[0]["reward"] is None and all(isinstance(r["reward"], float) for r in made[1:])
    lr_at = {r["step"]: r["lr"] for r in records if r["type"] == "train"}
    assert all(lr_at[r["step"] + 5] == pytest.approx(r["lr"]) for r in made)  # the LR it set is the one used
    assert all(r["lr"] == pytest.approx(3e-3 * r["scale"]) for r in made)  # on warmup + constant
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["optim"]["schedule"] == "constant"
    assert (out / "lr_curve.png").stat().st_size > 0 and (out / "loss_curve.png").is_file()
