"""Checkpoints: safetensors + JSON only, exact optimizer/RNG round trips, atomic replacement."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import linmix
from linmix.train import checkpoint as ck


def tiny_model() -> linmix.LanguageModel:
    return linmix.LanguageModel(11, d_model=16, layers="summation", max_len=8, n_heads=2)


def train_steps(model, opt, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randint(0, 11, (4, 8), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_optimizer_state_round_trip_continues_bitwise():
    torch.manual_seed(0)
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    train_steps(model, opt, 3, seed=1)
    tensors, meta = ck.flatten_optimizer_state(opt.state_dict())
    meta = json.loads(json.dumps(meta))  # as stored
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())

    clone = tiny_model()
    clone.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(clone.parameters(), lr=1e-2)
    opt2.load_state_dict(ck.unflatten_optimizer_state(tensors, meta))
    assert opt2.param_groups[0]["betas"] == (0.9, 0.95)
    train_steps(model, opt, 2, seed=2)
    train_steps(clone, opt2, 2, seed=2)
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_rng_state_round_trip():
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    tensors, meta = ck.capture_rng_state()
    meta = json.loads(json.dumps(meta))
    first = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    ck.restore_rng_state(tensors, meta)
    second = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]


def make_ckpt(run_dir, step, model, opt):
    return ck.save_checkpoint(run_dir, step, model, opt, {"note": step})


def test_checkpoint_files_are_safetensors_and_json_only(tmp_path):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters())
    train_steps(model, opt, 1, seed=0)
    path = make_ckpt(tmp_path, 1, model, opt)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "optimizer.safetensors",
                                                      "rng.safetensors", "state.json"]
    loaded = ck.load_checkpoint(tmp_path)
    assert loaded.step == 1 and loaded.path == path and loaded.state["note"] == 1
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text()) == {"checkpoint": "step-00000001",
                                                                                   "step": 1}


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters())
    train_steps(model, opt, 1, seed=0)
    make_ckpt(tmp_path, 10, model, opt)
    before = (tmp_path / "checkpoints" / "step-00000010" / "model.safetensors").read_bytes()

    real_save = ck.save_file

    def crash_on_optimizer(tensors, filename, *args, **kwargs):
        if filename.endswith(ck.OPTIMIZER):
            real_save(dict(list(tensors.items())[:1]), filename)  # a partial file, then the "crash"
            raise OSError("disk full")
        return real_save(tensors, filename, *args, **kwargs)

    train_steps(model, opt, 1, seed=1)
    monkeypatch.setattr(ck, "save_file", crash_on_optimizer)
    with pytest.raises(OSError):
        make_ckpt(tmp_path, 20, model, opt)
    monkeypatch.setattr(ck, "save_file", real_save)

    root = tmp_path / "checkpoints"
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the half-written checkpoint should still sit under its temp name"
    assert not (root / "step-00000020").exists()
    assert ck.latest_checkpoint(tmp_path) == root / "step-00000010"
    assert ck.load_checkpoint(tmp_path).step == 10
    assert (root / "step-00000010" / "model.safetensors").read_bytes() == before

    # latest.json lost or corrupt: the newest complete folder is used, never a temp one
    (root / "latest.json").write_text("{not json")
    assert ck.latest_checkpoint(tmp_path) == root / "step-00000010"

    make_ckpt(tmp_path, 30, model, opt)  # the next save cleans up temp folders and older checkpoints
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step-00000030"]


def test_non_finite_weights_are_never_saved(tmp_path):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters())
    make_ckpt(tmp_path, 5, model, opt)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        make_ckpt(tmp_path, 6, model, opt)
    assert ck.load_checkpoint(tmp_path).step == 5


def test_not_a_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ck.load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        ck.load_checkpoint(tmp_path / "missing")
    (tmp_path / "state.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError):
        ck.load_checkpoint(tmp_path)
