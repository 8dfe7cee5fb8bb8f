"""A tabular Q-learning LR controller (after the topological-sequence-model seed).

The controller watches the training loss and, once per window of ``window`` steps, decides whether to
change the learning rate. It multiplies a scale on top of the regular schedule:
``lr(step) = schedule(step) * controller.scale``, with the scale kept in ``[min_scale, max_scale]``.

* **State** — the binned *loss trend* of the window just finished: the relative change between the mean
  loss of its second half and of its first half, ``(mean2 - mean1) / |mean|``, cut by ``trend_edges``
  (default ``(-0.05, -0.01, 0.01, 0.05)`` -> 5 states: falling fast, falling, flat, rising, rising fast).
* **Actions** — multiply the scale by one of ``factors`` (default ``0.5, 0.9, 1.0, 1.1, 1.5``).
* **Reward** — the relative improvement of the window mean over the previous window's mean,
  ``(prev - cur) / |prev|``, clipped to ``[-1, 1]``: the action taken after the previous window is paid
  by how much the loss fell under it.
* **Update** — one-step Q-learning, ``Q[s, a] += alpha * (r + gamma * max Q[s'] - Q[s, a])``.
* **Policy** — epsilon-greedy from a seeded ``random.Random``; greedy ties go to the factor closest to 1
  (keep the LR), so an untrained table leaves the LR alone.

The whole state (Q table, RNG, current window, last state/action, scale) is plain JSON
(:meth:`state_dict`), saved in checkpoints; same seed + same losses -> same LR sequence.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

DEFAULT_FACTORS = (0.5, 0.9, 1.0, 1.1, 1.5)
DEFAULT_TREND_EDGES = (-0.05, -0.01, 0.01, 0.05)


class QLearningLRController:
    """Adapts an LR multiplier by epsilon-greedy tabular Q-learning over binned loss trends (see module doc)."""

    def __init__(self, factors: Sequence[float] = DEFAULT_FACTORS, window: int = 20,
                 trend_edges: Sequence[float] = DEFAULT_TREND_EDGES, epsilon: float = 0.1, alpha: float = 0.5,
                 gamma: float = 0.9, min_scale: float = 0.05, max_scale: float = 5.0, seed: int = 0) -> None:
        if not factors or any(not (f > 0 and math.isfinite(f)) for f in factors):
            raise ValueError(f"factors must be positive finite numbers, got {list(factors)}")
        if window < 2:
            raise ValueError(f"window must be >= 2 steps, got {window}")
        if list(trend_edges) != sorted(trend_edges):
            raise ValueError(f"trend_edges must be increasing, got {list(trend_edges)}")
        if not 0 <= epsilon <= 1 or not 0 < alpha <= 1 or not 0 <= gamma < 1:
            raise ValueError(f"need 0 <= epsilon <= 1, 0 < alpha <= 1, 0 <= gamma < 1; got {epsilon}, {alpha}, {gamma}")
        if not 0 < min_scale <= 1 <= max_scale:
            raise ValueError(f"need 0 < min_scale <= 1 <= max_scale, got {min_scale}, {max_scale}")
        self.factors = [float(f) for f in factors]
        self.window = int(window)
        self.trend_edges = [float(e) for e in trend_edges]
        self.epsilon, self.alpha, self.gamma = float(epsilon), float(alpha), float(gamma)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.seed = int(seed)
        self.rng = random.Random(seed)
        self.n_states = len(self.trend_edges) + 1
        self.q = [[0.0] * len(self.factors) for _ in range(self.n_states)]
        self.scale = 1.0
        self.losses: list[float] = []
        self.prev_state: int | None = None
        self.prev_action: int | None = None
        self.prev_mean: float | None = None
        self.decisions = 0
        # greedy tie-break order: the factor closest to 1 first (an untrained table keeps the LR)
        self._preference = sorted(range(len(self.factors)), key=lambda a: (abs(math.log(self.factors[a])), a))

    def trend_state(self, losses: Sequence[float]) -> int:
        """The state index of a window of losses (its binned relative trend)."""
        half = len(losses) // 2
        first, second = losses[:half], losses[half:]
        m1, m2 = sum(first) / len(first), sum(second) / len(second)
        scale = abs(sum(losses) / len(losses)) + 1e-12
        trend = (m2 - m1) / scale
        return sum(1 for edge in self.trend_edges if trend >= edge)

    def greedy(self, state: int) -> int:
        """The best-valued action in ``state`` (ties: the factor closest to 1)."""
        row = self.q[state]
        best = max(row)
        return next(a for a in self._preference if row[a] == best)

    def update(self, loss: float) -> float:
        """Record one step's training loss; returns the LR scale to use from the next step on."""
        self.losses.append(float(loss))
        if len(self.losses) >= self.window:
            self._decide()
        return self.scale

    def _decide(self) -> None:
        losses, self.losses = self.losses, []
        state = self.trend_state(losses)
        mean = sum(losses) / len(losses)
        if self.prev_state is not None and self.prev_action is not None and self.prev_mean is not None:
            reward = (self.prev_mean - mean) / (abs(self.prev_mean) + 1e-12)
            reward = max(-1.0, min(1.0, reward))
            q = self.q[self.prev_state]
            target = reward + self.gamma * max(self.q[state])
            q[self.prev_action] += self.alpha * (target - q[self.prev_action])
        if self.rng.random() < self.epsilon:
            action = self.rng.randrange(len(self.factors))
        else:
            action = self.greedy(state)
        self.scale = min(self.max_scale, max(self.min_scale, self.scale * self.factors[action]))
        self.prev_state, self.prev_action, self.prev_mean = state, action, mean
        self.decisions += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (plain JSON; floats round-trip exactly)."""
        version, internal, gauss = self.rng.getstate()
        return {
            "factors": self.factors, "window": self.window, "trend_edges": self.trend_edges,
            "epsilon": self.epsilon, "alpha": self.alpha, "gamma": self.gamma, "min_scale": self.min_scale,
            "max_scale": self.max_scale, "seed": self.seed, "q": self.q, "scale": self.scale,
            "losses": self.losses, "prev_state": self.prev_state, "prev_action": self.prev_action,
            "prev_mean": self.prev_mean, "decisions": self.decisions,
            "rng": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the hyper-parameters must match this controller's)."""
        for key in ("factors", "window", "trend_edges"):
            if state[key] != getattr(self, key):
                raise ValueError(f"Q-learning controller {key} differs from the checkpoint "
                                 f"({getattr(self, key)} vs {state[key]})")
        self.q = [[float(v) for v in row] for row in state["q"]]
        self.scale = float(state["scale"])
        self.losses = [float(v) for v in state["losses"]]
        self.prev_state, self.prev_action = state["prev_state"], state["prev_action"]
        self.prev_mean = state["prev_mean"]
        self.decisions = int(state["decisions"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))

    @classmethod
    def from_options(cls, options: dict[str, Any], seed: int) -> QLearningLRController:
        """Build from ``TrainConfig.controller_options`` (``ValueError`` for unknown keys)."""
        allowed = {"factors", "window", "trend_edges", "epsilon", "alpha", "gamma", "min_scale", "max_scale"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(f"unknown Q-learning option(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
        return cls(seed=seed, **options)
