"""Two-process gloo data parallel: ranks stay identical and match one process with the same global batch."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import PYTHON

from linmix.train import train_config, build_trainer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")]

WORKER = """
import json, sys
from safetensors.torch import save_file
from linmix.train import train_config, build_trainer
from linmix.train.distributed import cleanup_distributed, init_distributed, resolve_device

config = train_config(**json.loads(sys.argv[1]))
device = resolve_device("cpu")
ctx = init_distributed(device)            # reads RANK / WORLD_SIZE / LOCAL_RANK like under torchrun
assert ctx.world_size == 2 and ctx.backend == "gloo"
trainer = build_trainer(config, ctx=ctx, device=device)
summary = trainer.fit()
params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
save_file(params, f"{sys.argv[2]}/rank{ctx.rank}.safetensors")
json.dump(summary, open(f"{sys.argv[2]}/summary{ctx.rank}.json", "w"), default=str)
cleanup_distributed()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_config(root: Path, out: Path, batch: int) -> dict:
    return dict(task="lm", dataset="tinyshakespeare", data_dir=str(root), out=str(out), d_model=16, n_heads=2,
                layers="summation,attention", max_len=16, batch_size=batch, steps=12, warmup=2, eval_every=6,
                eval_batches=2, log_every=1, dtype="float64", seed=11, progress=False)


def launch(world: int, args: list[str], tmp_path: Path) -> None:
    port = free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out


def test_two_gloo_ranks_match_one_process_with_the_global_batch(tiny_root, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ddp_out = tmp_path / "ddp"
    launch(2, [PYTHON, str(script), json.dumps(base_config(tiny_root, ddp_out, batch=4)), str(tmp_path)], tmp_path)

    rank0, rank1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs across ranks"
    s0 = json.loads((tmp_path / "summary0.json").read_text())
    assert s0["world_size"] == 2 and s0["ranks_in_sync"] is True

    single = build_trainer(train_config(**base_config(tiny_root, tmp_path / "single", batch=8)))
    single.fit()
    for name, p in single.model.named_parameters():
        assert torch.allclose(p.detach(), rank0[name], rtol=0, atol=1e-9), f"{name}: DDP and single process differ"

    # rank 0 alone wrote the run directory; its logged losses are the global ones
    def losses(run: Path) -> list[float]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["type"] == "train"]

    assert len(losses(ddp_out)) == 12
    assert losses(ddp_out) == pytest.approx(losses(tmp_path / "single"), abs=1e-10)
    finals = [json.loads(line) for line in (ddp_out / "metrics.jsonl").read_text().splitlines()][-1]
    assert finals["type"] == "final"


def test_torchrun_cli_smoke(tiny_root, tmp_path):
    pytest.importorskip("torch.distributed.run")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "linmix.cli", "train", "lm", "--data-dir", str(tiny_root), "--out", str(out), "--d-model", "16",
           "--n-heads", "2", "--layers", "summation", "--block-size", "16", "--batch-size", "4", "--steps", "6",
           "--warmup", "1", "--eval-every", "3", "--eval-batches", "1", "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True and summary["steps_done"] == 6
    assert result.stdout.count("completed:") == 1  # rank 0 alone reports
