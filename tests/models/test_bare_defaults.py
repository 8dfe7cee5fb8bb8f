"""A bare stack (the summation papers' embedding -> mixer -> pool) defaults its summation layers to the raw
sum; residual stacks keep the count; saved configs name what they were built with, and a config.json written
before the bare default existed loads as it was trained (count)."""
from __future__ import annotations

import json

import pytest
import torch

import linmix
from linmix.config import ModelConfig, train_config


def _normalizations(model) -> list[str]:
    return [m.normalize for m in model.modules() if type(m).__name__ == "SummationMixer"]


@pytest.mark.parametrize("arch, expected", [("bare", ["none", "none"]), ("block", ["count", "count"])])
def test_summation_normalisation_follows_the_architecture(arch, expected):
    model = linmix.Classifier(50, 3, layers="summation*2", arch=arch, max_len=8, d_model=16)
    assert _normalizations(model) == expected


def test_inline_and_model_options_win_over_the_bare_default():
    inline = linmix.Classifier(50, 3, layers="summation(normalize=sqrt),summation", arch="bare", max_len=8, d_model=16)
    assert _normalizations(inline) == ["sqrt", "none"]
    model_level = linmix.Classifier(50, 3, layers="summation,attention", arch="bare", max_len=8, d_model=16,
                                    mixer_options={"summation": {"normalize": "count"}})
    assert _normalizations(model_level) == ["count"]


def test_the_bare_default_is_written_into_the_resolved_config():
    cfg = ModelConfig(head="classify", layers="summation", arch="bare", vocab_size=50, num_classes=3).resolved()
    assert cfg.mixer_options == {"summation": {"normalize": "none"}}
    # nothing to fill: every summation layer sets it inline, or there is no summation layer
    inline = ModelConfig(head="classify", layers="summation(normalize=count)", arch="bare").resolved()
    assert inline.mixer_options == {}
    assert ModelConfig(head="classify", layers="attention", arch="bare").resolved().mixer_options == {}
    assert train_config("classify", layers="summation", arch="bare").resolved().model.mixer_options == {
        "summation": {"normalize": "none"}}


def _forward(model, ids):
    model.eval()
    with torch.no_grad():
        return model(ids)


def test_saved_bare_model_round_trips(tmp_path):
    torch.manual_seed(0)
    model = linmix.Classifier(50, 3, layers="summation", arch="bare", max_len=8, d_model=16)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["mixer_options"] == {"summation": {"normalize": "none"}}
    ids = torch.randint(0, 50, (2, 8))
    loaded = linmix.load_pretrained(tmp_path)
    assert _normalizations(loaded) == ["none"]
    torch.testing.assert_close(_forward(loaded, ids), _forward(model, ids), rtol=0, atol=0)


def test_a_config_saved_before_the_bare_default_loads_as_trained(tmp_path):
    """Such a file has no normalize anywhere: its bare summation layers were built with the count."""
    torch.manual_seed(0)
    old = linmix.Classifier(50, 3, layers="summation*2", arch="bare", max_len=8, d_model=16,
                            mixer_options={"summation": {"normalize": "count"}})
    old.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["mixer_options"] = {}  # what the older writer left
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = linmix.load_pretrained(tmp_path)
    assert _normalizations(loaded) == ["count", "count"]
    ids = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(_forward(loaded, ids), _forward(old, ids), rtol=0, atol=0)
    # and a raw-sum model's outputs differ from it, so the check above can fail
    raw = linmix.Classifier(50, 3, layers="summation*2", arch="bare", max_len=8, d_model=16)
    raw.load_state_dict(old.state_dict())
    assert not torch.allclose(_forward(raw, ids), _forward(old, ids))
