"""Multi-process data parallel: detect ``torchrun``, start the process group, small collective helpers.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` set)
:func:`init_distributed` starts ``torch.distributed`` with **gloo** on CPU and **NCCL** on CUDA
(one GPU per process, ``cuda:LOCAL_RANK``). Without those variables everything is a no-op and
``world_size == 1``. The trainer wraps the model in ``DistributedDataParallel``; rank 0 alone writes
files. Examples::

    torchrun --standalone --nproc_per_node 2 -m linmix train lm --dataset tinyshakespeare --out runs/ddp
    # two machines, 8 GPUs each (run on both, node_rank 0 and 1):
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --master_addr HOST0 --master_port 29500 \\
        -m linmix train lm --dataset tinyshakespeare --out runs/ddp
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the variables ``torchrun`` sets (``(0, 1, 0)`` otherwise)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ValueError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {err}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` under DDP -> ``cuda:LOCAL_RANK``."""
    name = device.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif dev.type not in ("cpu", "mps"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group when launched by ``torchrun`` (gloo for CPU, NCCL for CUDA)."""
    rank, world, local = env_world()
    if world == 1:
        return DistContext()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, world, local, backend)


def cleanup_distributed() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (identity for one process). Float64 on the wire for exact-ish sums."""
    if not ctx.enabled:
        return values
    out = values.detach().to(torch.float64)
    if ctx.backend == "nccl":
        out = out.cuda()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def run_on_main(fn: Callable[[], T], ctx: DistContext) -> T | None:
    """Run ``fn`` on rank 0 only; if it raises, every rank raises the same ``ValueError`` (no hang).

    Returns ``fn()``'s result on rank 0 and ``None`` elsewhere.
    """
    result: Any = None
    error: BaseException | None = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as exc:  # re-raised below on rank 0, reported to the others first
            error = exc
    if ctx.enabled:
        status = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(status, src=0)
        if status[0] is not None and not ctx.is_main:
            raise ValueError(f"rank 0 failed: {status[0]}")
    if error is not None:
        raise error
    return result


def params_in_sync(model: torch.nn.Module, ctx: DistContext) -> bool | None:
    """True when every rank holds bitwise the same parameters (compared through a few float64 checksums);
    ``None`` for a single process."""
    if not ctx.enabled:
        return None
    flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    weights = torch.arange(1, len(flat) + 1, dtype=torch.float64)
    check = torch.stack([flat.sum(), (flat * weights).sum(), flat.abs().max(), flat.square().sum()])
    if ctx.backend == "nccl":
        check = check.cuda()
    gathered = [torch.zeros_like(check) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, check)
    return all(torch.equal(g, gathered[0]) for g in gathered)
