"""Distilling a converted model: teach each new mixer the attention it replaced, then recover end to end.

The two stages of LoLCATs (arXiv 2410.10254), with Hedgehog's (arXiv 2402.04347) attention-output
matching as the first::

    model, report = linmix.convert(model, mixer="linear_attention", keep_teacher=True)
    per_layer = linmix.distill.attention_transfer(model, batches, steps=200, lr=1e-3, out="runs/x/transfer")
    linmix.distill.recover(model, batches, steps=200, lr=1e-4, teacher="kept", kl_weight=0.5,
                           lora_rank=8, out="runs/x/recovery")
    linmix.distill.merge_lora(model); linmix.distill.drop_teachers(model)

* :func:`attention_transfer` (:mod:`~linmix.distill.transfer`): every converted layer fits its frozen
  teacher's outputs on the teacher's own inputs, all layers at once; only the new mixers train.
* :func:`recover` (:mod:`~linmix.distill.recovery`): next-token loss, optionally mixed with KL to a
  teacher model's logits, optionally through low-rank adapters (:mod:`~linmix.distill.lora`).
* Both write logs, figures and a resumable state under ``out`` (:mod:`~linmix.distill.stage`).
* ``linmix distill`` (:mod:`~linmix.distill.cli`) runs it all for a ``linmix train lm`` run
  (:mod:`~linmix.distill.pipeline`); Hugging Face models are driven from Python as above, or by
  ``linmix distill-hf``.
* ``linmix distill-demo`` (:mod:`~linmix.distill.demo`) trains an attention LM from a config file,
  distils it into several mixers and sets each beside the same architecture trained from scratch.
* ``linmix distill-hf`` (:mod:`~linmix.distill.hf_demo`) linearizes a pretrained Hugging Face causal LM
  (e.g. SmolLM2-135M from a GGUF file) into each variant of a config file and reports the perplexity
  after every stage, greedy samples, and the decode memory and decode time against context length
  (:mod:`~linmix.distill.hf_decode_time`).
"""
from linmix.convert.teachers import converted_layers, drop_teachers
from linmix.distill.lora import add_lora, merge_lora
from linmix.distill.recovery import recover, recovery_losses, teachers_in_place
from linmix.distill.transfer import attention_transfer, transfer_losses

__all__ = ["add_lora", "attention_transfer", "converted_layers", "drop_teachers", "merge_lora", "recover",
           "recovery_losses", "teachers_in_place", "transfer_losses"]
