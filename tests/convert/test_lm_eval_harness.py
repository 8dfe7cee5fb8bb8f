"""The EleutherAI evaluation harness (lm_eval) scores a linmix checkpoint on local toy tasks, and its numbers
are the linmix model's own: log-probabilities (multiple choice, rolling) and greedy text (generation), through
HFLM with a loaded model and a converted tokenizer, and through the registered "linmix" model from a
checkpoint folder."""
from __future__ import annotations

import json
import math

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'linmix[eval]')")
pytest.importorskip("lm_eval", reason="the evaluation harness lm-eval is not installed (pip install 'linmix[eval]')")
pytest.importorskip("accelerate", reason="lm_eval's HFLM needs accelerate (pip install 'linmix[eval]')")

import lm_eval  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

import linmix  # noqa: E402
import linmix.harness  # noqa: E402  (registers the "linmix" harness model)
from linmix.data import CharTokenizer  # noqa: E402
from linmix.hf import LinmixForCausalLM, transformers_tokenizer  # noqa: E402

CORPUS = "the cat sat on the mat. a dog ran to the park, and the bird flew home.\n"
MAX_LEN = 48
CHOICE_DOCS = [
    {"context": "the cat sat on the", "choices": ["mat", "dog", "park"]},
    {"context": "a dog ran to the", "choices": ["park", "cat"]},
    {"context": "and the bird", "choices": ["flew home", "sat", "ran to"]},
    {"context": "the", "choices": ["bird", "mat.", "cat sat"]},
]
TEXT_DOCS = [{"text": "the dog sat on the mat."}, {"text": "a bird ran home, and the cat flew."}]
PROMPT_DOCS = [{"prompt": "the cat sat"}, {"prompt": "cat"}]
GEN_TOKENS = 6

CHOICE_TASK = """\
task: linmix_toy_choice
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
  cache_dir: {cache}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
target_delimiter: " "
metric_list:
  - metric: acc
  - metric: acc_norm
"""
ROLLING_TASK = """\
task: linmix_toy_rolling
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
  cache_dir: {cache}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: bits_per_byte
"""
GENERATE_TASK = """\
task: linmix_toy_generate
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
  cache_dir: {cache}
test_split: test
output_type: generate_until
doc_to_text: prompt
doc_to_target: prompt
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: %d
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""" % GEN_TOKENS


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny random char LM saved with its tokenizer, the toy tasks, and the scores worked out by hand."""
    root = tmp_path_factory.mktemp("harness")
    torch.manual_seed(0)
    tok = CharTokenizer.train(CORPUS)
    model = linmix.LanguageModel(tok.vocab_size, d_model=16, layers="summation,attention", max_len=MAX_LEN,
                                 n_heads=2).eval()
    with torch.no_grad():  # livelier weights than the init, so the choices' scores are far apart
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.5)
        model.encoder.embed.weight[tok.pad_id] = 0.0  # (tied) pad logit 0: like a trained LM, it writes text
    checkpoint = model.save_pretrained(root / "checkpoint")
    tok.save(checkpoint)  # the tokenizer beside the model, as linmix's training and distillation save them

    def logprob(context: list[int], continuation: list[int]) -> float:
        ids = torch.tensor([context + continuation])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids[:, :-1]).double(), dim=-1)[0]
        return sum(float(logp[len(context) - 1 + i, t]) for i, t in enumerate(continuation))

    choice_ll = [[logprob(tok.encode(d["context"]), tok.encode(" " + c)) for c in d["choices"]] for d in CHOICE_DOCS]
    best = [max(range(len(ll)), key=ll.__getitem__) for ll in choice_ll]
    # gold = the model's own pick on the first two documents and another choice on the last two: accuracy 0.5
    docs = [{**d, "label": b if i < 2 else (b + 1) % len(d["choices"])}
            for i, (d, b) in enumerate(zip(CHOICE_DOCS, best))]
    norm = [max(range(len(ll)), key=lambda j: ll[j] / len(d["choices"][j])) for ll, d in zip(choice_ll, docs)]
    pad = tok.pad_id  # the end-of-text stand-in that a text scored from its start is conditioned on
    text_ll = [logprob([pad], tok.encode(d["text"])) for d in TEXT_DOCS]
    greedy = [model.generate(torch.tensor([tok.encode(d["prompt"])]), GEN_TOKENS, temperature=0)[0].tolist()
              for d in PROMPT_DOCS]
    continuations = [ids[len(tok.encode(d["prompt"])):] for ids, d in zip(greedy, PROMPT_DOCS)]
    assert all(pad not in c for c in continuations), "the harness would stop at the pad (end-of-text) token"
    expected = {
        "choice_ll": choice_ll,
        "generated": [tok.decode(c).split("\n")[0] for c in continuations],
        "acc": sum(b == d["label"] for b, d in zip(best, docs)) / len(docs),
        "acc_norm": sum(n == d["label"] for n, d in zip(norm, docs)) / len(docs),
        "bits_per_byte": -sum(text_ll) / sum(len(d["text"].encode()) for d in TEXT_DOCS) / math.log(2),
    }
    tasks = root / "tasks"
    tasks.mkdir()
    for name, template, rows in (("choice", CHOICE_TASK, docs), ("rolling", ROLLING_TASK, TEXT_DOCS),
                                 ("generate", GENERATE_TASK, PROMPT_DOCS)):
        data = root / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tasks / f"{name}.yaml").write_text(template.format(data=json.dumps(str(data)),
                                                            cache=json.dumps(str(root / "datasets-cache"))))
    return {"tok": tok, "checkpoint": checkpoint, "tasks": tasks, "expected": expected}


def evaluate(setup, model, tasks, **kwargs):
    manager = TaskManager(include_path=str(setup["tasks"]), include_defaults=False)
    return lm_eval.simple_evaluate(model=model, tasks=[f"linmix_toy_{t}" for t in tasks], task_manager=manager,
                                   bootstrap_iters=0, log_samples=True, **kwargs)


def check_scores(results, expected):
    choice, rolling = results["results"]["linmix_toy_choice"], results["results"]["linmix_toy_rolling"]
    assert expected["acc"] == 0.5
    assert choice["acc,none"] == pytest.approx(expected["acc"])
    assert choice["acc_norm,none"] == pytest.approx(expected["acc_norm"])
    assert rolling["bits_per_byte,none"] == pytest.approx(expected["bits_per_byte"], rel=1e-5)
    samples = sorted(results["samples"]["linmix_toy_choice"], key=lambda s: s["doc_id"])
    assert len(samples) == len(CHOICE_DOCS)
    for sample, want in zip(samples, expected["choice_ll"]):
        got = [ll for ll, _greedy in sample["filtered_resps"]]
        assert got == pytest.approx(want, abs=1e-4)


def test_hflm_scores_a_loaded_linmix_model_with_its_own_log_probabilities(setup, one_thread):
    hf = transformers.AutoModelForCausalLM.from_pretrained(setup["checkpoint"])
    assert type(hf) is LinmixForCausalLM
    # batched: log-likelihood requests of different lengths share right-padded batches
    lm = HFLM(pretrained=hf, tokenizer=transformers_tokenizer(setup["tok"]), batch_size=4, backend="causal")
    assert lm.max_length == MAX_LEN and lm.prefix_token_id == setup["tok"].pad_id
    check_scores(evaluate(setup, lm, ["choice", "rolling"]), setup["expected"])


def test_the_registered_linmix_model_scores_and_generates_from_a_checkpoint_folder(setup, one_thread):
    results = evaluate(setup, "linmix", ["choice", "rolling", "generate"],
                       model_args={"pretrained": str(setup["checkpoint"])}, batch_size=1, device="cpu")
    check_scores(results, setup["expected"])
    assert results["config"]["model"] == "linmix"
    samples = sorted(results["samples"]["linmix_toy_generate"], key=lambda s: s["doc_id"])
    assert [s["filtered_resps"][0] for s in samples] == setup["expected"]["generated"]
    assert all(len(g) > 2 for g in setup["expected"]["generated"]), "too little generated text to compare"


def test_linmix_lm_takes_a_linmix_model_object_with_its_tokenizer(setup, one_thread):
    model = linmix.load_pretrained(setup["checkpoint"]).eval()
    lm = linmix.harness.LinmixLM(pretrained=model, tokenizer=setup["tok"])
    assert type(lm.model) is LinmixForCausalLM and lm.model.model is model and lm.max_length == MAX_LEN
    assert lm.tok_encode("the cat") == setup["tok"].encode("the cat")
    with pytest.raises(ValueError, match="needs tokenizer="):
        linmix.harness.LinmixLM(pretrained=model)
