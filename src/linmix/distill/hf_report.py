"""The outputs of ``linmix distill-hf``: every number in ``results.json``, the tables in ``results.md``
and the figure ``results.png`` (perplexity per stage; decode memory and decode time against context length).

The perplexity table has one row per variant: its mixer, its parameter count and the validation
perplexity of the plain swap, after attention transfer and after recovery, beside the teacher's on the
same windows. The memory table has one row per context length: the teacher's KV cache and each
variant's streaming state. The samples are the greedy continuations of one prompt by the teacher and
by every variant after each stage. The decode-time table has one row per model (teacher, then the
variants) and one column per prompt length: the median milliseconds per new token, with the prefill
seconds (:mod:`linmix.distill.hf_decode_time`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from linmix.models.pretrained import write_json_atomic
from linmix.train.reporting import save_png

OUTPUTS = ("results.md", "results.json", "results.png")
#: the stages of a variant, in order: (key, label)
STAGES = (("swap", "plain swap"), ("transfer", "after transfer"), ("recovery", "after recovery"))
#: the columns of the perplexity table
COLUMNS = ("variant", "mixer", "params", "plain swap", "after transfer", "after recovery", "teacher")
MIB = 2 ** 20


def _row(result: dict[str, Any], teacher: dict[str, Any]) -> dict[str, Any]:
    evals = result["evals"]
    row = {"variant": result["name"], "mixer": result["mixer"], "options": result["options"],
           "replaced": result["replaced"], "params": result["params"]["after"],
           "mixer_params": result["params"]["mixers"], "teacher": teacher["ppl"]}
    for key, _ in STAGES:
        row[key] = evals[key]["ppl"]
        row[f"{key}_loss"] = evals[key]["loss"]
    return row


def build_results(config: Any, teacher: dict[str, Any], results: list[dict[str, Any]], times: dict[str, float],
                  out: Path, wall_s: float, command: str, decode: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``results.json`` dict: settings, the teacher, one row per variant, memory, samples, decode time
    (``decode``, the ``decode.json`` record), timings."""
    from linmix.train.reporting import machine, versions

    memory = {"lengths": teacher["memory"]["lengths"], "teacher": teacher["memory"]["bytes"],
              **{r["name"]: r["memory"]["bytes"] for r in results}}
    samples = {"prompt": config.prompt, "tokens": config.sample_tokens, "teacher": teacher["sample"],
               **{r["name"]: {key: r["evals"][key]["sample"] for key, _ in STAGES} for r in results}}
    return {"config": config.to_dict(), "out": str(out), "command": command,
            "teacher": {k: teacher[k] for k in ("ppl", "loss", "tokens", "facts", "memory")},
            "eval": {"windows": config.eval_windows, "len": config.eval_len, "tokens": teacher["tokens"]},
            "steps": {"transfer": config.transfer_steps, "recovery": config.recovery_steps,
                      "seq_len": config.seq_len, "batch_size": config.batch_size},
            "rows": [_row(r, teacher) for r in results], "memory": memory, "samples": samples, "decode": decode,
            "variants": results,
            "wall_s": {"stages": dict(times), "stages_total": sum(times.values()), "this_run": wall_s},
            "machine": machine(torch.device("cpu")), "versions": versions()}


def _fmt(value: Any) -> str:
    return f"{value:,.2f}" if isinstance(value, float) and math.isfinite(value) else "-"


def _mib(nbytes: int) -> str:
    value = nbytes / MIB
    return f"{value:,.2f}" if value >= 0.1 else f"{value:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ⏎ ").strip()


def _settings_line(row_settings: dict[str, Any]) -> str:
    s = row_settings
    return (f"transfer lr {s['transfer_lr']:g} ({s['loss']}, {'new parameters only' if s['freeze_copied'] else 'all'}"
            f"), recovery lr {s['recovery_lr']:g}, kl_weight {s['kl_weight']:g}, lora_rank {s['lora_rank']}")


def markdown(results: dict[str, Any]) -> str:
    """``results.md``: how the numbers were made, then the tables and the samples."""
    cfg, t, steps, ev = results["config"], results["teacher"], results["steps"], results["eval"]
    facts, mem, w = t["facts"], t["memory"], results["wall_s"]
    m = results["machine"]
    source = cfg["teacher"] + (f" ({cfg['gguf_file']}, dequantised to float32)" if cfg["gguf_file"] else "")
    lines = [f"# Linearizing a pretrained LLM: {source}", "",
             f"- teacher: {facts['model_type']}, {facts['layers']} layers, d_model {facts['d_model']}, "
             f"{facts['heads']} heads ({facts['kv_heads']} key/value heads), {facts['params']:,} parameters",
             "- conversion (`linmix.convert`): every attention layer becomes the variant's mixer, q/k/v/o copied "
             "where it has them (key/value heads repeated), the model's rope base given to mixers that take one",
             f"- data: {cfg['dataset']} train, tokenised with the teacher's tokenizer; each step reads "
             f"{steps['batch_size']} x {steps['seq_len']} tokens at seeded positions (the same for every variant)",
             f"- attention transfer: {steps['transfer']} steps, each layer fitted to the attention it replaced on "
             f"the teacher's own inputs; recovery: {steps['recovery']} steps end to end",
             f"- perplexity: {cfg['dataset']} validation, the first {ev['windows']} windows of {ev['len']} tokens, "
             f"each scored on its own ({ev['tokens']:,} predicted tokens), the same for every model",
             f"- machine: {m.get('device_name')} ({m.get('cpu_count')} cores, {m.get('torch_threads')} threads); "
             f"wall time of all stages: {w['stages_total']:.0f} s", "",
             "## Validation perplexity", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    by_name = {v["name"]: v for v in results["variants"]}
    for r in results["rows"]:
        lines.append(f"| {r['variant']} | `{r['mixer']}` | {r['params']:,} | {_fmt(r['swap'])} | {_fmt(r['transfer'])} "
                     f"| {_fmt(r['recovery'])} | {_fmt(r['teacher'])} |")
    lines += [""] + [f"- {r['variant']}: `{r['mixer']}` {r['options'] or ''}; {_settings_line(by_name[r['variant']]['settings'])}"
                     for r in results["rows"]]
    names = [r["variant"] for r in results["rows"]]
    lines += ["", "## Decode memory against context length", "",
              f"The teacher's KV cache (float32 keys and values of {facts['layers']} layers x {facts['kv_heads']} "
              f"key/value heads x {facts['head_dim']}; a cache transformers built over {mem['measured']['tokens']} "
              f"tokens held {mem['measured']['bytes']:,} bytes, the formula gives {mem['measured']['formula']:,}) "
              "against each variant's streaming state, summed over its converted layers (read from the state "
              "tensors of `Mixer.prefill` at that length). The converted transformers model itself generates "
              "without a cache (the whole prefix each step); the state is what a streaming decode holds.", "",
              "| context (tokens) | teacher KV cache (MiB) | " + " | ".join(f"{n} state (MiB)" for n in names) + " |",
              "|" + "---|" * (2 + len(names))]
    memory = results["memory"]
    for i, length in enumerate(memory["lengths"]):
        cells = [_mib(memory[n][i]) for n in ["teacher", *names]]
        lines.append(f"| {length:,} | " + " | ".join(cells) + " |")
    lines += decode_lines(results, names)
    samples = results["samples"]
    lines += ["", f"## Greedy samples ({samples['tokens']} tokens after the prompt)", "",
              f"Prompt: `{_cell(samples['prompt'])}`", "", "| model | continuation |", "|---|---|",
              f"| teacher | {_cell(samples['teacher'])} |"]
    for n in names:
        for key, label in STAGES:
            lines.append(f"| {n}, {label} | {_cell(samples[n][key])} |")
    lines += ["", "![perplexity per stage, decode memory and decode time](results.png)", "",
              "Reproduce (or resume) with:", "",
              "```", results["command"] or "linmix distill-hf --config CONFIG", "```", ""]
    return "\n".join(lines)


def _ms(run: dict[str, Any]) -> float | None:
    return run["token_s"] * 1e3 if "token_s" in run else None


def decode_lines(results: dict[str, Any], names: list[str]) -> list[str]:
    """The decode-time section of ``results.md`` (nothing when the run has no decode record)."""
    decode = results.get("decode")
    if not decode or not decode.get("models"):
        return []
    m, lengths, models = results["machine"], decode["lengths"], decode["models"]
    threads = sorted({models[n]["threads"] for n in models})
    lines = ["", "## Decode time against context length (ms per new token, median; prefill s)", "",
             f"A prompt of the first L validation tokens, then {decode['tokens']} greedy tokens; each step timed on "
             "its own and the median of the steps after the prefill reported, with the prefill's seconds in "
             "brackets. The teacher decodes with `generate` on its KV cache, each variant (reloaded from its "
             "`model/` folder) with `linmix.convert.generate_streaming` from its mixers' states. Measured on "
             f"{m.get('device_name')} ({m.get('cpu_count')} cores) with {'/'.join(map(str, threads))} torch "
             "thread(s); one decode per cell, so the numbers carry the machine's noise.", "",
             "| model | " + " | ".join(f"{n:,} tokens" for n in lengths) + " |", "|" + "---|" * (1 + len(lengths))]
    skipped = []
    for name in ["teacher", *names]:
        if name not in models:
            continue
        cells = []
        for run in models[name]["runs"]:
            if "token_s" in run:
                cells.append(f"{_ms(run):,.1f} ({run['prefill_s']:.3g} s)")
            else:
                cells.append("skipped")
                skipped.append(f"- {name} at {run['length']:,} tokens skipped: {run['skipped']}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ([""] + skipped) if skipped else []
    ref = decode.get("recompute")
    if ref:
        if "token_s" in ref:
            own = next((r for r in models.get(ref["variant"], {}).get("runs", []) if r["length"] == ref["length"]), {})
            against = f", against {_ms(own):,.1f} ms streaming" if "token_s" in own else ""
            text = (f"{_ms(ref):,.1f} ms per new token at {ref['length']:,} tokens{against}: it runs the whole prefix "
                    "again for every token, which streaming avoids")
        else:
            text = f"skipped: {ref['skipped']}"
        lines += ["", f"- {ref['variant']} through the converted model's own `generate(use_cache=False)`: {text}."]
    return lines


def plot(results: dict[str, Any], path: Path) -> Path:
    """Left: perplexity per stage, one line per variant, the teacher dashed (log scale). Middle: decode
    memory against context length, teacher and variants (log-log). Right: decode time (ms per new token)
    against context length, with the full-prefix reference as a cross."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4.5))
    FigureCanvasAgg(fig)
    left, right, timed = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    for i, row in enumerate(results["rows"]):
        values = [(x, row[key]) for x, (key, _) in enumerate(STAGES) if _finite(row[key])]
        left.plot([x for x, _ in values], [v for _, v in values], "o-", color=f"C{i % 10}", label=row["variant"])
    teacher = results["teacher"]["ppl"]
    left.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher ({teacher:.1f})")
    shown = [row[key] for row in results["rows"] for key, _ in STAGES if _finite(row[key])] + [teacher]
    if min(shown) > 0 and max(shown) / min(shown) > 3:
        left.set_yscale("log")
    left.set_xticks(range(len(STAGES)))
    left.set_xticklabels([label for _, label in STAGES])
    left.set_ylabel("validation perplexity")
    left.set_title("perplexity per stage", fontsize=9)
    memory = results["memory"]
    lengths = memory["lengths"]
    right.plot(lengths, [b / MIB for b in memory["teacher"]], "s--", color="black", label="teacher KV cache")
    for i, row in enumerate(results["rows"]):
        right.plot(lengths, [b / MIB for b in memory[row["variant"]]], "o-", color=f"C{i % 10}",
                   label=f"{row['variant']} state")
    _length_axes(right, "decode memory (MiB)", "decode memory against context length")
    _plot_decode(results, timed)
    for ax in (left, right, timed):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def _plot_decode(results: dict[str, Any], ax: Any) -> None:
    decode = results.get("decode") or {}
    models = decode.get("models", {})
    for i, name in enumerate(["teacher", *(row["variant"] for row in results["rows"])]):
        points = [(r["length"], _ms(r)) for r in models.get(name, {}).get("runs", []) if "token_s" in r]
        if points:
            style = ("s--", "black") if name == "teacher" else ("o-", f"C{(i - 1) % 10}")
            ax.plot(*zip(*points), style[0], color=style[1], label=f"{name} ({models[name]['method']})")
    ref = decode.get("recompute") or {}
    if "token_s" in ref:
        ax.plot([ref["length"]], [_ms(ref)], "x", color="red", markersize=9,
                label=f"{ref['variant']}, generate(use_cache=False)")
    _length_axes(ax, "ms per new token (median)", "decode time against context length")


def _length_axes(ax: Any, ylabel: str, title: str) -> None:
    """Log-log axes against context length, as both decode panels draw them."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.md`` and ``results.png`` in ``out`` (each atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    tmp = out / "results.md.tmp"
    tmp.write_text(markdown(results))
    os.replace(tmp, out / "results.md")
    plot(results, out / "results.png")
