"""import linmix.hf: folders written by LanguageModel.save_pretrained load with transformers' Auto classes."""
from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'linmix[hf]')")

import linmix  # noqa: E402
import linmix.hf  # noqa: E402
from linmix.hf import LinmixConfig, LinmixForCausalLM  # noqa: E402

V = 40
SPECS = {
    "hybrid": dict(layers="summation*2,attention", positional="learned"),
    "untied-rotary": dict(layers="linear_attention,local_attention(window=4)", positional="rotary", tie_weights=False),
    "spectral": dict(layers="spectral,aggregation", positional="sinusoidal", norm="post"),
}


def saved(tmp_path, name: str) -> tuple[linmix.LanguageModel, object]:
    torch.manual_seed(0)
    model = linmix.LanguageModel(V, d_model=32, max_len=64, n_heads=2, **SPECS[name]).eval()
    with torch.no_grad():  # livelier weights than the init, so greedy decoding does not settle at once
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.5)
    return model, model.save_pretrained(tmp_path / name)


@pytest.mark.parametrize("name", list(SPECS))
def test_a_linmix_folder_loads_with_the_auto_classes(tmp_path, name):
    model, path = saved(tmp_path, name)
    config = transformers.AutoConfig.from_pretrained(path)
    assert type(config) is LinmixConfig and config.model_type == "linmix_lm"
    assert config.model_config() == model.config
    hf = transformers.AutoModelForCausalLM.from_pretrained(path)
    assert type(hf) is LinmixForCausalLM and not hf.training
    ids = torch.randint(0, V, (2, 7))
    torch.testing.assert_close(hf(ids).logits, model(ids))
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), hf.model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert (hf.model.head.weight is hf.model.encoder.embed.weight) == model.config.tie_weights


@pytest.mark.parametrize("name", list(SPECS))
def test_greedy_generate_gives_linmix_tokens(tmp_path, name):
    model, path = saved(tmp_path, name)
    hf = transformers.AutoModelForCausalLM.from_pretrained(path)
    ids = torch.randint(0, V, (2, 5))
    out = hf.generate(ids, do_sample=False, max_new_tokens=12)
    expected = model.generate(ids, 12, temperature=0)
    assert torch.equal(out, expected)
    assert torch.equal(hf.generate(ids, do_sample=False, max_new_tokens=12, use_cache=True), expected)
    assert len(set(expected[:, 5:].flatten().tolist())) > 2, "a degenerate model: the check proves little"


def test_saving_from_either_side_keeps_linmixs_strict_folder(tmp_path):
    model, path = saved(tmp_path, "hybrid")
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "linmix_lm" and config["architectures"] == ["LinmixForCausalLM"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(path)
    hf.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == config
    loaded = linmix.load_pretrained(tmp_path / "again").eval()
    ids = torch.randint(0, V, (1, 6))
    torch.testing.assert_close(loaded(ids), model(ids))


def test_from_config_labels_and_refusals(tmp_path):
    hf = transformers.AutoModelForCausalLM.from_config(LinmixConfig(vocab_size=V, d_model=16, layers="summation",
                                                                    max_len=32))
    assert type(hf) is LinmixForCausalLM and hf.config.use_cache is False
    ids = torch.randint(0, V, (2, 6))
    out = hf(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    padded = torch.ones(2, 6, dtype=torch.long)
    padded[0, :2] = 0
    with pytest.raises(ValueError, match="reads unpadded batches"):
        hf(ids, attention_mask=padded)
    torch.testing.assert_close(hf(ids, attention_mask=torch.ones_like(padded)).logits, out.logits)
    with pytest.raises(FileNotFoundError, match="is not a local folder"):
        LinmixForCausalLM.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match="describes a language model"):
        LinmixConfig(vocab_size=V, d_model=16, layers="summation", max_len=32, head="classify").model_config()


def test_a_converted_linmix_model_loads_in_transformers(tmp_path):
    model = linmix.LanguageModel(V, d_model=32, layers="attention*2", max_len=64, n_heads=2).eval()
    converted, _ = linmix.convert(model, mixer="linear_attention", keep=[0])
    hf = transformers.AutoModelForCausalLM.from_pretrained(converted.save_pretrained(tmp_path / "c"), dtype="float64")
    assert hf.config.layers == "attention,linear_attention" and hf.model.head.weight.dtype == torch.float64
    ids = torch.randint(0, V, (1, 5))
    torch.testing.assert_close(hf(ids).logits, converted.double()(ids))


TEXT = "The cat sat on the mat.<br />Dogs don't run!\n  <pad> it's x's <unk>"
SAMPLES = [TEXT, "the cat <pad><unk>", "Zebra?? <BR>ok\t", "", "  spaced  out \n", "ünïcode ŝ"]


def tokenizers_of_every_kind():
    from linmix.data import BPETokenizer, CharTokenizer, HubTokenizer, WordTokenizer

    bpe = BPETokenizer.train(TEXT * 20, 300)
    return {"char": CharTokenizer.train(TEXT), "word": WordTokenizer.train(TEXT, 30), "bpe": bpe,
            "hf": HubTokenizer(bpe.hf)}


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "hf"])
def test_transformers_tokenizer_encodes_as_the_linmix_tokenizer(tmp_path, kind):
    tok = tokenizers_of_every_kind()[kind]
    fast = linmix.hf.transformers_tokenizer(tok.save(tmp_path / kind) if kind == "char" else tok)
    assert isinstance(fast, transformers.PreTrainedTokenizerFast)
    assert fast.vocab_size == len(fast) == tok.vocab_size
    assert fast.pad_token_id == tok.pad_id and fast.eos_token_id == tok.pad_id and fast.bos_token_id is None
    for text in SAMPLES:
        ids = tok.encode(text)
        assert fast.encode(text) == ids == fast(text)["input_ids"], text
        assert fast.decode(ids, skip_special_tokens=True) == tok.decode(ids), text
    assert len(set(tok.encode(TEXT))) > 5  # the samples exercise a real vocabulary
    fast.save_pretrained(tmp_path / "fast")
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "fast").encode(TEXT) == tok.encode(TEXT)


def test_transformers_tokenizer_end_of_text_and_refusals():
    from linmix.data import HubTokenizer

    bpe = tokenizers_of_every_kind()["bpe"]
    bpe.hf.add_special_tokens(["<|endoftext|>"])
    assert linmix.hf.transformers_tokenizer(HubTokenizer(bpe.hf)).eos_token == "<|endoftext|>"
    assert linmix.hf.transformers_tokenizer(bpe).eos_token == "<pad>"
    assert linmix.hf.transformers_tokenizer(bpe, eos_token="<|endoftext|>").eos_token == "<|endoftext|>"
    from tokenizers import Tokenizer as TokenizerObject
    from tokenizers.models import WordLevel

    bare = HubTokenizer(TokenizerObject(WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]")))
    assert bare.pad_token is None  # no pad or end-of-text token: none is made up (id 0 is the word "a")
    fast = linmix.hf.transformers_tokenizer(bare)
    assert fast.pad_token is None and fast.eos_token is None and fast.encode("a") == [0]
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        linmix.hf.transformers_tokenizer(bpe, eos_token="<eos>")
    class Reversed(type(tokenizers_of_every_kind()["char"])):  # a tokenizer the converter does not know
        def encode(self, text):
            return super().encode(text[::-1])

    with pytest.raises(TypeError, match="no transformers form for Reversed"):
        linmix.hf.transformers_tokenizer(Reversed(["a"]))


@pytest.mark.parametrize("name", ["hybrid", "untied-rotary"])
def test_what_evaluation_tools_read_from_the_model(tmp_path, name):
    model, path = saved(tmp_path, name)
    (tmp_path / "outer").mkdir()
    path.rename(tmp_path / "outer" / "inner")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "outer", subfolder="inner",
                                                           device_map={"": "cpu"}, dtype="auto")
    assert hf.config.max_position_embeddings == model.config.max_len == 64
    assert hf.device == torch.device("cpu") and hf.generation_config.use_cache is False
    hf.tie_weights()  # what the evaluation harness calls: tying follows tie_weights, both ways
    assert (hf.model.head.weight is hf.model.encoder.embed.weight) == model.config.tie_weights
    torch.testing.assert_close(hf.model.head.weight, model.head.weight)
