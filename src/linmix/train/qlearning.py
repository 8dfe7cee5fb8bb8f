"""A tabular Q-learning LR controller, the one the topological paper trains with.

The controller multiplies the base schedule: ``lr(step) = schedule(step) * controller.scale``, the scale
starting at 1 and kept in ``[min_scale, max_scale]``. The trainer feeds it the training loss of every step
*after warmup* (warmup is the schedule's alone, so every reward measures the controller's own actions).
Without an explicit ``--schedule`` a controlled run uses warmup + constant, so the controller, not a
cosine decay, decides when to anneal: that is the fair contender to warmup + cosine.

* **Decisions** — every ``window`` steps (default 10), on the mean training loss of the window just
  finished (the *smoothed loss*). The first window only sets the reference; decisions start after the second.
* **State** — ``(trend bin, scale bin)``. The trend is the relative change of the smoothed loss since the
  previous window, ``(m_k - m_{k-1}) / |m_{k-1}|``, cut by ``trend_edges`` (default
  ``(-0.02, -0.005, 0.005)``: falling fast, falling, flat, rising). The scale bin cuts the current scale by
  ``scale_edges`` (default ``(0.3, 0.75)``: low, mid, high), because whether a change helps depends on
  where the LR already is. 4 x 3 = 12 states by default.
* **Actions** — multiply the scale by one of ``factors`` (default ``0.5, 1.0, 1.5``: cut, keep, raise),
  clipped to ``[min_scale, max_scale]`` (default ``[0.1, 2.0]``; 0.1 is the cosine floor's ratio).
* **Reward** — of the action taken at the previous decision: the relative loss decrease it was followed
  by, ``-trend``, minus a running baseline (an exponential average with decay ``baseline_decay`` = 0.8 of
  the decreases seen so far), clipped to ``[-1, 1]``. While a model learns the loss falls after almost any
  action, so the raw decrease would pay every action; the baseline makes the reward say whether the
  action did *better than recent windows*.
* **Update** — one-step Q-learning, ``Q[s, a] += alpha * (r + gamma * max Q[s'] - Q[s, a])``, with
  ``alpha`` = 0.3 (the rewards are noisy) and ``gamma`` = 0.5 (an LR change pays off mostly within a
  few windows).
* **Exploration** — epsilon-greedy from a seeded ``random.Random``: at decision ``k`` epsilon is
  ``max(epsilon_min, epsilon * epsilon_decay ** k)`` (default 0.3, 0.97, 0.05: about 20 decisions to halve).
  Greedy ties go to the factor closest to 1, so an untrained table keeps the LR.

Why these choices: with the raw decrease as the reward, "keep" would earn a positive value in every state
while the loss falls and stay greedy after its first win over the zero-initialised table, so only the
rare random actions would move the LR; a fixed small epsilon, decisions every 20 steps through warmup and a
trend measured inside one window (half of it against the other: mostly minibatch noise) make that rarer
still. The baseline, the decaying epsilon, 10-step windows after warmup and the between-window trend avoid it.

Every decision is a :class:`Decision` (the trainer logs it to ``metrics.jsonl``). The whole state (Q table,
RNG, windows, baseline, decision count) is plain JSON (:meth:`state_dict`), saved in checkpoints: same seed
and same losses give the same decisions, resumed or not.
"""
from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_FACTORS = (0.5, 1.0, 1.5)
DEFAULT_TREND_EDGES = (-0.02, -0.005, 0.005)
DEFAULT_SCALE_EDGES = (0.3, 0.75)
STATE_FORMAT = 2  # bump when state_dict() changes meaning
OPTIONS = ("factors", "window", "trend_edges", "scale_edges", "epsilon", "epsilon_decay", "epsilon_min", "alpha",
           "gamma", "baseline_decay", "min_scale", "max_scale")


@dataclass(frozen=True)
class Decision:
    """One decision: the state seen, the action chosen and the reward the previous action earned."""

    index: int  #: 0 for the first decision
    state: int  #: ``trend_bin * n_scale_bins + scale_bin``
    trend_bin: int
    scale_bin: int
    trend: float  #: relative change of the smoothed loss since the previous window
    action: int  #: index into ``factors``
    factor: float
    epsilon: float  #: the exploration probability this decision used
    explored: bool  #: True = a random action, False = the greedy one
    reward: float | None  #: what the previous action earned (None at the first decision)
    scale: float  #: the LR scale from the next step on

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class QLearningLRController:
    """Adapts an LR multiplier by epsilon-greedy tabular Q-learning over the loss trend (see module doc)."""

    def __init__(self, factors: Sequence[float] = DEFAULT_FACTORS, window: int = 10,
                 trend_edges: Sequence[float] = DEFAULT_TREND_EDGES, scale_edges: Sequence[float] = DEFAULT_SCALE_EDGES,
                 epsilon: float = 0.3, epsilon_decay: float = 0.97, epsilon_min: float = 0.05, alpha: float = 0.3,
                 gamma: float = 0.5, baseline_decay: float = 0.8, min_scale: float = 0.1, max_scale: float = 2.0,
                 seed: int = 0) -> None:
        if not factors or any(not (f > 0 and math.isfinite(f)) for f in factors):
            raise ValueError(f"factors must be positive finite numbers, got {list(factors)}")
        if window < 2:
            raise ValueError(f"window must be >= 2 steps, got {window}")
        for name, edges in (("trend_edges", trend_edges), ("scale_edges", scale_edges)):
            if list(edges) != sorted(edges):
                raise ValueError(f"{name} must be increasing, got {list(edges)}")
        if not (0 <= epsilon_min <= epsilon <= 1 and 0 < epsilon_decay <= 1):
            raise ValueError(f"need 0 <= epsilon_min <= epsilon <= 1 and 0 < epsilon_decay <= 1; got "
                             f"{epsilon_min}, {epsilon}, {epsilon_decay}")
        if not (0 < alpha <= 1 and 0 <= gamma < 1 and 0 <= baseline_decay < 1):
            raise ValueError(f"need 0 < alpha <= 1, 0 <= gamma < 1, 0 <= baseline_decay < 1; got {alpha}, {gamma}, "
                             f"{baseline_decay}")
        if not 0 < min_scale <= 1 <= max_scale:
            raise ValueError(f"need 0 < min_scale <= 1 <= max_scale, got {min_scale}, {max_scale}")
        self.factors = [float(f) for f in factors]
        self.window = int(window)
        self.trend_edges = [float(e) for e in trend_edges]
        self.scale_edges = [float(e) for e in scale_edges]
        self.epsilon, self.epsilon_decay, self.epsilon_min = float(epsilon), float(epsilon_decay), float(epsilon_min)
        self.alpha, self.gamma, self.baseline_decay = float(alpha), float(gamma), float(baseline_decay)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.seed = int(seed)
        self.rng = random.Random(seed)
        self.n_scale_bins = len(self.scale_edges) + 1
        self.n_states = (len(self.trend_edges) + 1) * self.n_scale_bins
        self.q = [[0.0] * len(self.factors) for _ in range(self.n_states)]
        self.scale = 1.0
        self.losses: list[float] = []  # the current window
        self.prev_mean: float | None = None  # the previous window's smoothed loss
        self.baseline: float | None = None  # running mean of the relative decreases
        self.prev_state: int | None = None
        self.prev_action: int | None = None
        self.decisions = 0
        # greedy tie-break order: the factor closest to 1 first (an untrained table keeps the LR)
        self._preference = sorted(range(len(self.factors)), key=lambda a: (abs(math.log(self.factors[a])), a))

    # ------------------------------------------------------------------ pieces

    @property
    def current_epsilon(self) -> float:
        """The exploration probability of the next decision."""
        return max(self.epsilon_min, self.epsilon * self.epsilon_decay ** self.decisions)

    def trend_bin(self, trend: float) -> int:
        """The bin of a relative loss change (0 = falling fastest)."""
        return sum(1 for edge in self.trend_edges if trend >= edge)

    def scale_bin(self, scale: float) -> int:
        """The bin of an LR scale (0 = lowest)."""
        return sum(1 for edge in self.scale_edges if scale >= edge)

    def greedy(self, state: int) -> int:
        """The best-valued action in ``state`` (ties: the factor closest to 1)."""
        row = self.q[state]
        best = max(row)
        return next(a for a in self._preference if row[a] == best)

    def learn(self, state: int, action: int, reward: float, next_state: int) -> None:
        """One Q-learning update of ``Q[state, action]`` towards ``reward + gamma * max Q[next_state]``."""
        target = reward + self.gamma * max(self.q[next_state])
        self.q[state][action] += self.alpha * (target - self.q[state][action])

    # ------------------------------------------------------------------ stepping

    def update(self, loss: float) -> float:
        """Record one step's training loss; returns the LR scale to use from the next step on."""
        self.observe(loss)
        return self.scale

    def observe(self, loss: float) -> Decision | None:
        """Record one step's training loss; returns the :class:`Decision` when this step ended a window
        that was decided on (the scale then changes from the next step on), else ``None``."""
        self.losses.append(float(loss))
        if len(self.losses) < self.window:
            return None
        window, self.losses = self.losses, []
        mean = sum(window) / len(window)
        prev, self.prev_mean = self.prev_mean, mean
        if prev is None:
            return None  # the first window is the reference of the first trend
        return self._decide((mean - prev) / max(abs(prev), 1e-12))

    def _decide(self, trend: float) -> Decision:
        t_bin, s_bin = self.trend_bin(trend), self.scale_bin(self.scale)
        state = t_bin * self.n_scale_bins + s_bin
        decrease = -trend
        reward = None
        if self.baseline is None:
            self.baseline = decrease
        else:
            reward = max(-1.0, min(1.0, decrease - self.baseline))
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * decrease
            if self.prev_state is not None and self.prev_action is not None:
                self.learn(self.prev_state, self.prev_action, reward, state)
        epsilon = self.current_epsilon
        explored = self.rng.random() < epsilon
        action = self.rng.randrange(len(self.factors)) if explored else self.greedy(state)
        self.scale = min(self.max_scale, max(self.min_scale, self.scale * self.factors[action]))
        self.prev_state, self.prev_action = state, action
        decision = Decision(self.decisions, state, t_bin, s_bin, trend, action, self.factors[action], epsilon,
                            explored, reward, self.scale)
        self.decisions += 1
        return decision

    # ------------------------------------------------------------------ state

    def options(self) -> dict[str, Any]:
        """The hyper-parameters (what :meth:`from_options` takes)."""
        return {name: getattr(self, name) for name in OPTIONS}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (plain JSON; floats round-trip exactly)."""
        version, internal, gauss = self.rng.getstate()
        return {
            "format": STATE_FORMAT, **self.options(), "seed": self.seed, "q": self.q, "scale": self.scale,
            "losses": self.losses, "prev_mean": self.prev_mean, "baseline": self.baseline,
            "prev_state": self.prev_state, "prev_action": self.prev_action, "decisions": self.decisions,
            "rng": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the hyper-parameters must match this controller's)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError("the checkpoint holds a Q-learning controller state of another format; "
                             "start a new run")
        for key in OPTIONS:
            if state[key] != getattr(self, key):
                raise ValueError(f"Q-learning controller {key} differs from the checkpoint "
                                 f"({getattr(self, key)} vs {state[key]})")
        self.q = [[float(v) for v in row] for row in state["q"]]
        self.scale = float(state["scale"])
        self.losses = [float(v) for v in state["losses"]]
        self.prev_mean, self.baseline = state["prev_mean"], state["baseline"]
        self.prev_state, self.prev_action = state["prev_state"], state["prev_action"]
        self.decisions = int(state["decisions"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))

    @classmethod
    def from_options(cls, options: dict[str, Any], seed: int) -> QLearningLRController:
        """Build from ``OptimConfig.controller_options`` (``ValueError`` for unknown keys)."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown Q-learning option(s) {unknown}; allowed: {', '.join(sorted(OPTIONS))}")
        return cls(seed=seed, **options)
