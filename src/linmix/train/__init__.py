"""Training: one loop for every task, checkpoints, LR schedules and controller, data parallel, sampling.

* :class:`~linmix.config.TrainConfig` — everything that defines a run; :func:`run_training` / :func:`train_lm` run it.
* :class:`Trainer` — the loop (AdamW, warmup + cosine/constant LR, clipping, eval, early stopping, AMP,
  NaN stop, DDP); :mod:`~linmix.train.tasks` adapts LM / classification / regression data to it.
* :mod:`~linmix.train.checkpoint` — safetensors + JSON checkpoints, atomic; exact ``--resume``.
* :class:`QLearningLRController` — the Q-learning LR controller (``--lr-controller qlearning``);
  :func:`compare_schedules` trains it against warmup + cosine and warmup + constant (``linmix train-schedules``).
* :func:`load_lm` / :func:`sample_text` — streaming generation from a run.
"""
from linmix.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from linmix.config import TrainConfig, train_config
from linmix.train.distributed import DistContext, init_distributed
from linmix.train.loop import EarlyStopping, Trainer, TrainingDiverged
from linmix.train.qlearning import QLearningLRController
from linmix.train.run import build_trainer, prepare, run_training, train_classifier, train_lm, train_multimodal
from linmix.train.sample import load_lm, sample_text
from linmix.train.schedule_compare import compare_schedules, schedule_candidates
from linmix.train.schedules import LRSchedule, warmup_constant, warmup_cosine
from linmix.train.tasks import ClassifyTask, LMTask, RegressionTask, Task

__all__ = [
    "ClassifyTask", "DistContext", "EarlyStopping", "LMTask", "LRSchedule", "QLearningLRController",
    "RegressionTask", "Task", "TrainConfig", "Trainer", "TrainingDiverged", "build_trainer", "compare_schedules",
    "init_distributed", "latest_checkpoint", "load_checkpoint", "load_lm", "prepare", "run_training", "sample_text",
    "save_checkpoint", "schedule_candidates", "train_classifier", "train_config", "train_lm", "train_multimodal",
    "warmup_constant", "warmup_cosine",
]
