"""Per-task adapters between the data layer and the one training loop.

A :class:`Task` answers four questions for the trainer: which batch is step ``s`` (a pure function of
``(seed, step, rank)``, so ``--resume`` needs no sampler state and DDP ranks never share examples), what
the loss of a batch is, which batches form the validation pass, and how per-batch sums become metrics.

* :class:`LMTask` — next-token prediction on windows of ``block_size + 1`` ids. Each epoch shifts the
  window grid by a seeded offset in ``[0, block_size)`` and visits the windows in a seeded order,
  rank-strided with :func:`linmix.data.shard_indices`; a world of ``W`` ranks with per-rank batch ``B``
  sees exactly the windows that one process with batch ``W * B`` sees.
* :class:`ClassifyTask` — cross-entropy over :class:`~linmix.data.ClassificationBatches`; metric accuracy.
* :class:`RegressionTask` — MSE on standardised targets over :class:`~linmix.data.MultimodalBatches`;
  RMSE / MAE reported in the target's own units, and R^2 (1 - squared error / the split's own variance).
"""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from linmix.data import shard_indices


class Task(ABC):
    """What the trainer needs to know about a task (see the module doc)."""

    #: the validation metric that early stopping and "best" follow, and whether lower is better
    monitor: str = "val_loss"
    mode: str = "min"
    steps_per_epoch: int = 1
    #: the keys :meth:`eval_sums` returns (every rank reduces them in this order)
    sum_keys: tuple[str, ...] = ("count", "loss_sum")

    @abstractmethod
    def train_batch(self, step: int, device: torch.device) -> Any:
        """The batch of training step ``step`` on this rank."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """Mean training loss of ``batch`` (a scalar with grad)."""

    @abstractmethod
    def tokens(self, batch: Any) -> int:
        """Real (non-padding) tokens in ``batch``, for the tokens/s figure."""

    @abstractmethod
    def eval_batches(self, limit: int | None, device: torch.device) -> Iterator[Any]:
        """This rank's share of the validation batches (``limit`` per rank, ``None`` = all)."""

    @abstractmethod
    def eval_sums(self, model: torch.nn.Module, batch: Any) -> dict[str, float]:
        """Additive statistics of one validation batch (summed over batches and ranks)."""

    @abstractmethod
    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        """Metrics (``val_loss`` and friends) from the summed statistics."""

    def position(self, step: int) -> dict[str, int]:
        """Where in the data step ``step`` is: epoch and batch index (saved in checkpoints)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        return {"epoch": epoch, "batch": index, "steps_per_epoch": self.steps_per_epoch}


class LMTask(Task):
    """Causal LM on a token stream: ``x = ids[s : s + T]``, ``y = ids[s + 1 : s + T + 1]``."""

    monitor, mode = "val_loss", "min"

    sum_keys = ("correct", "count", "loss_sum")

    def __init__(self, train_ids: torch.Tensor, val_ids: torch.Tensor, block_size: int, batch_size: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.train_ids, self.val_ids = train_ids.long(), val_ids.long()
        self.block, self.batch_size, self.seed = block_size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.num_windows = (len(self.train_ids) - block_size) // block_size
        self.num_val_windows = (len(self.val_ids) - 1) // block_size
        if self.num_val_windows < 1:
            raise ValueError(f"the validation text ({len(self.val_ids)} tokens) is shorter than one block "
                             f"of {block_size + 1}; use a smaller --block-size")
        per_rank = self.num_windows // world_size
        self.steps_per_epoch = per_rank // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training text ({len(self.train_ids)} tokens) gives {self.num_windows} windows of "
                f"{block_size}, fewer than one batch of {batch_size} x {world_size} rank(s); "
                "use a smaller --batch-size or --block-size")
        self._arange = torch.arange(block_size + 1)
        self._epoch: int | None = None
        self._order = torch.empty(0, dtype=torch.long)
        self._offset = 0

    def epoch_layout(self, epoch: int) -> tuple[int, torch.Tensor]:
        """``(offset, window order on this rank)`` of ``epoch``: both functions of ``(seed, epoch)`` only."""
        offset = int(np.random.default_rng([self.seed, epoch, 0x4C4D]).integers(self.block))
        order = shard_indices(self.num_windows, epoch=epoch, seed=self.seed, shuffle=True, rank=self.rank,
                              world_size=self.world_size, mode="drop")
        return offset, torch.tensor(order, dtype=torch.long)

    def train_batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._offset, self._order = self.epoch_layout(epoch)
            self._epoch = epoch
        windows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return self._gather(self.train_ids, self._offset + windows * self.block, device)

    def _gather(self, ids: torch.Tensor, starts: torch.Tensor,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = ids[starts[:, None] + self._arange]
        return chunk[:, :-1].to(device), chunk[:, 1:].to(device)

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        return F.cross_entropy(_wide(logits).flatten(0, 1), y.flatten())

    def tokens(self, batch: Any) -> int:
        return batch[0].numel()

    def eval_batches(self, limit: int | None, device: torch.device) -> Iterator[Any]:
        g = torch.Generator().manual_seed(self.seed + 0x5EED)
        order = torch.randperm(self.num_val_windows, generator=g)
        if limit is not None:
            order = order[: limit * self.batch_size * self.world_size]
        mine = order[self.rank::self.world_size]
        for b in range(0, len(mine), self.batch_size):
            yield self._gather(self.val_ids, mine[b:b + self.batch_size] * self.block, device)

    def eval_sums(self, model: torch.nn.Module, batch: Any) -> dict[str, float]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(_wide(logits).flatten(0, 1), y.flatten(), reduction="sum")
        correct = (logits.argmax(-1) == y).sum()
        return {"loss_sum": float(loss), "correct": float(correct), "count": float(y.numel())}

    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        loss = sums["loss_sum"] / n
        return {"val_loss": loss, "val_ppl": float(np.exp(min(loss, 50.0))), "val_acc": sums["correct"] / n,
                "val_tokens": sums["count"]}


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Autocast outputs (bf16/fp16) to float32 for the loss; float32/float64 stay as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class _EpochCursor:
    """Step -> batch for a text batcher with ``iter_epoch(epoch)``: sequential steps reuse one iterator."""

    def __init__(self, batcher: Any) -> None:
        self.batcher = batcher
        self.steps_per_epoch = len(batcher)
        self._it: Iterator[Any] | None = None
        self._next: tuple[int, int] | None = None

    def get(self, step: int) -> Any:
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._next != (epoch, index) or self._it is None:
            self._it = itertools.islice(self.batcher.iter_epoch(epoch), index, None)
        batch = next(self._it)
        self._next = (epoch, index + 1) if index + 1 < self.steps_per_epoch else None
        return batch


class _TextBatchTask(Task):
    """A task over padded text batchers (``iter_epoch(epoch)``, ``len``): batches ``(ids, padding_mask, ...)``.

    Training steps walk the training batcher epoch by epoch; validation is epoch 0 of the validation batcher
    (``limit`` batches per rank, ``None`` = all). Subclasses give the loss and the metrics.
    """

    def __init__(self, train_batches: Any, val_batches: Any) -> None:
        if len(train_batches) < 1:
            raise ValueError("the training split gives no full batch; use a smaller --batch-size")
        self.cursor = _EpochCursor(train_batches)
        self.steps_per_epoch = self.cursor.steps_per_epoch
        self.val = val_batches

    def train_batch(self, step: int, device: torch.device) -> Any:
        return tuple(t.to(device) for t in self.cursor.get(step))

    def tokens(self, batch: Any) -> int:
        return int(batch[1].sum())

    def eval_batches(self, limit: int | None, device: torch.device) -> Iterator[Any]:
        it = self.val.iter_epoch(0)
        for batch in (it if limit is None else itertools.islice(it, limit)):
            yield tuple(t.to(device) for t in batch)


class ClassifyTask(_TextBatchTask):
    """Single-label classification: cross-entropy; metrics ``val_loss``, ``val_acc`` (monitored)."""

    monitor, mode = "val_acc", "max"
    sum_keys = ("correct", "count", "loss_sum")

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        ids, mask, labels = batch
        return F.cross_entropy(_wide(model(ids, padding_mask=mask)), labels)

    def eval_sums(self, model: torch.nn.Module, batch: Any) -> dict[str, float]:
        ids, mask, labels = batch
        logits = _wide(model(ids, padding_mask=mask))
        return {"loss_sum": float(F.cross_entropy(logits, labels, reduction="sum")),
                "correct": float((logits.argmax(-1) == labels).sum()), "count": float(len(labels))}

    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        return {"val_loss": sums["loss_sum"] / n, "val_acc": sums["correct"] / n, "val_examples": sums["count"]}


class RegressionTask(_TextBatchTask):
    """Text + numeric regression: MSE on ``(target - mean) / std``; RMSE and MAE in target units, R^2."""

    monitor, mode = "val_rmse", "min"
    sum_keys = ("abs_sum", "count", "loss_sum", "sq_sum", "target_sq_sum", "target_sum")

    def __init__(self, train_batches: Any, val_batches: Any, target_mean: float, target_std: float) -> None:
        super().__init__(train_batches, val_batches)
        self.mean, self.std = float(target_mean), float(target_std)

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        ids, mask, numeric, targets = batch
        pred = _wide(model(ids, numeric, padding_mask=mask))
        return F.mse_loss(pred, ((targets - self.mean) / self.std).to(pred.dtype))

    def eval_sums(self, model: torch.nn.Module, batch: Any) -> dict[str, float]:
        ids, mask, numeric, targets = batch
        pred_std = model(ids, numeric, padding_mask=mask).double()
        targets = targets.double()
        pred = pred_std * self.std + self.mean
        err = pred - targets
        # targets are summed around the train mean so the split's variance (for R^2) loses no precision
        centred = targets - self.mean
        return {"loss_sum": float(((pred_std - centred / self.std) ** 2).sum()),
                "sq_sum": float((err ** 2).sum()), "abs_sum": float(err.abs().sum()), "count": float(len(targets)),
                "target_sum": float(centred.sum()), "target_sq_sum": float((centred ** 2).sum())}

    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        total = sums["target_sq_sum"] - sums["target_sum"] ** 2 / n
        r2 = 1.0 - sums["sq_sum"] / total if total > 0 else float("nan")
        return {"val_loss": sums["loss_sum"] / n, "val_rmse": float(np.sqrt(sums["sq_sum"] / n)),
                "val_mae": sums["abs_sum"] / n, "val_r2": r2, "val_examples": sums["count"]}
