"""The report half of ``linmix bench long``: summary, markdown tables, plots (perplexity vs T, one passkey
heatmap per model, cost vs T)."""
from __future__ import annotations

import re
from pathlib import Path

from linmix.bench.report import md_table, sections, targets_markdown

CHANCE = 0.1


def _case(r: dict) -> str:
    return r["model"] if r["positional"] == "learned" else f"{r['model']} (pos={r['positional']})"


def _tasks(rows: list[dict], prefix: str) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in rows if r["task"].startswith(prefix)))


def summarize(rows: list[dict], config=None) -> dict:
    """Per LM task and case: perplexity at the training length, the longest length that ran and its ppl;
    per passkey model: mean accuracy per length."""
    out: dict = {"lm": {}, "passkey": {}}
    for task in _tasks(rows, "lm:"):
        for case in dict.fromkeys(_case(r) for r in rows if r["task"] == task):
            mine = [r for r in rows if r["task"] == task and _case(r) == case]
            ok = [r for r in mine if r["status"] == "ok"]
            at_train = next((r["ppl"] for r in ok if r["T"] == r["train_len"]), None)
            longest = max(ok, key=lambda r: r["T"]) if ok else None
            out["lm"].setdefault(task, {})[case] = {
                "ppl_at_train_len": at_train, "longest_ok_T": longest["T"] if longest else None,
                "ppl_at_longest": longest["ppl"] if longest else None,
                "ppl_ratio_longest_over_train": longest["ppl"] / at_train if longest and at_train else None,
                "stopped": next((r["status"] for r in mine if r["status"] != "ok"), None)}
    for model in dict.fromkeys(r["model"] for r in rows if r["task"] == "passkey"):
        mine = [r for r in rows if r["task"] == "passkey" and r["model"] == model]
        acc = {}
        for T in dict.fromkeys(r["T"] for r in mine):
            vals = [r["accuracy"] for r in mine if r["T"] == T and r["status"] == "ok"]
            acc[T] = sum(vals) / len(vals) if vals else None
        out["passkey"][model] = {"mean_accuracy_by_T": acc, "chance": CHANCE}
    return out


def _table(rows: list[dict], key: str, fmt, label=_case) -> str:
    cases = list(dict.fromkeys(label(r) for r in rows))
    cols = sorted({r["T"] for r in rows})
    by = {(label(r), r["T"]): r for r in rows}

    def cell(r):
        if r is None:
            return ""
        return fmt(r[key]) if r.get(key) is not None else ("-" if r["status"] == "ok" else r["status"])

    return md_table(["model", *[f"T={T}" for T in cols]], [[c] + [cell(by.get((c, T))) for T in cols] for c in cases])


def _f(spec: str):
    return lambda v: format(v, spec)


def markdown(result: dict) -> str:
    """The ``long.md`` tables: perplexity vs T per corpus, passkey accuracy per model, cost, parameters."""
    rows, cfg = result["rows"], result["meta"]["config"]
    excluded = ", ".join(cfg.get("excluded_bidirectional") or []) or "none"
    parts = [("", f"D={cfg['d_model']}, {cfg['n_heads']} heads, FFN 4D; every model trained with the same "
                  f"{cfg['train_steps']} steps x batch {cfg['batch_size']} x T={cfg['train_len']}, AdamW lr "
                  f"{cfg['lr']} (warm-up + cosine), device {cfg['device']}. Sizes are not equalised: same D and "
                  "layers, parameter counts below, so no parameter parity is claimed.\n\n"
                  f"Excluded: {excluded} (bidirectional only: it sees the future, so next-token tasks do not "
                  "apply).\n\n"
                  f"Past T={cfg['train_len']} each model is rebuilt with max_len=T and its trained weights copied "
                  "in" + ("" if cfg["extend"] else " (extend=False here: not done, longer T cannot run)") +
                  ": positional-table rows, summation modulation rows and causal spectral kernel taps beyond the "
                  "training length keep their initialisation, i.e. are untrained. That is what length "
                  "extrapolation tests. Perplexity is over the first "
                  f"max({cfg['eval_tokens']}, T) validation tokens in windows of T (tokens evaluated: CSV).")]
    for task in _tasks(rows, "lm:"):
        mine = [r for r in rows if r["task"] == task]
        parts.append((f"{task[3:]}: validation perplexity vs evaluation length", _table(mine, "ppl", _f(".2f"))))
        parts.append((f"{task[3:]}: tokens evaluated", _table(mine, "tokens_evaluated", str)))
    pk = [r for r in rows if r["task"] == "passkey"]
    if pk:
        parts.append(("", f"Passkey retrieval: trained at T={pk[0]['train_len']} ({cfg['passkey_steps']} steps, "
                          f"random depths, positional {pk[0]['positional']}), {cfg['passkey_samples']} sequences "
                          f"per cell, filler {cfg['passkey_filler']}; accuracy = key digits right, chance "
                          f"{CHANCE:.0%}."))
        for model in dict.fromkeys(r["model"] for r in pk):
            mine = [r for r in pk if r["model"] == model]
            parts.append((f"Passkey accuracy: {model} (`{mine[0]['layers']}`), rows = depth",
                          _table(mine, "accuracy", _f(".2f"), label=lambda r: f"depth {r['depth']:.0%}")))
    lm = [r for r in rows if r["task"].startswith("lm:")]
    cost = [r for r in (lm or pk) if r["task"] == (lm or pk)[0]["task"] and r["positional"] == (lm or pk)[0]["positional"]
            and r.get("depth") in (None, (lm or pk)[0].get("depth"))]
    if cost:
        parts.append((f"Seconds per sequence, inference at T (batch 1, no grad; {cost[0]['task']})",
                      _table(cost, "seconds_per_seq", _f(".4f"))))
        parts.append(("Peak extra memory of one forward at T (MiB, fresh process)",
                      _table(cost, "peak_mem_mib", _f(".1f"))))
    params = {(r["task"], _case(r)): r["params"] for r in rows}
    parts.append(("Parameters (trained model)", md_table(["task", "model", "parameters"],
                                                          [[t, c, f"{p:,}"] for (t, c), p in params.items()])))
    parts.append(("Targets", targets_markdown(result["summary"]["targets"])))
    return sections(*parts)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def plot(result: dict, out: Path) -> list[Path]:
    """``long_ppl_<corpus>.png``, ``long_passkey_<model>.png`` (heatmap depth x T) and ``long_cost.png``."""
    import matplotlib.pyplot as plt

    from linmix.bench.plots import plot_lines

    rows, paths = result["rows"], []
    for task in _tasks(rows, "lm:"):
        mine = [r for r in rows if r["task"] == task]
        lines = {c: [(r["T"], r.get("ppl")) for r in mine if _case(r) == c] for c in dict.fromkeys(map(_case, mine))}
        paths.append(plot_lines(lines, out / f"long_ppl_{_slug(task[3:])}.png", "evaluation length T",
                                "validation perplexity", f"{task[3:]}: perplexity vs length (trained at "
                                f"T={mine[0]['train_len']}; missing = could not run)"))
    for model in dict.fromkeys(r["model"] for r in rows if r["task"] == "passkey"):
        mine = [r for r in rows if r["task"] == "passkey" and r["model"] == model]
        Ts, depths = sorted({r["T"] for r in mine}), sorted({r["depth"] for r in mine})
        by = {(r["depth"], r["T"]): r for r in mine}
        grid = [[by[(d, T)]["accuracy"] if by[(d, T)]["status"] == "ok" else float("nan") for T in Ts] for d in depths]
        fig, ax = plt.subplots(figsize=(1.3 * len(Ts) + 2.5, 0.6 * len(depths) + 2))
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i, d in enumerate(depths):
            for j, T in enumerate(Ts):
                r = by[(d, T)]
                text = f"{r['accuracy']:.2f}" if r["status"] == "ok" else r["status"].split(":")[0].split("(")[0][:14]
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w" if r["status"] == "ok" else "k")
        ax.set_xticks(range(len(Ts)), [f"{T}" for T in Ts])
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("key depth")
        ax.set_title(f"passkey accuracy: {model} (trained at T={mine[0]['train_len']}; chance {CHANCE:.0%})", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        paths.append(out / f"long_passkey_{_slug(model)}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    first = next((r for r in rows if r["task"].startswith("lm:")), rows[0] if rows else None)
    if first is not None:
        mine = [r for r in rows if r["task"] == first["task"] and r["positional"] == first["positional"]
                and r.get("depth") == first.get("depth")]
        lines = {m: [(r["T"], r.get("seconds_per_seq")) for r in mine if r["model"] == m]
                 for m in dict.fromkeys(r["model"] for r in mine)}
        paths.append(plot_lines(lines, out / "long_cost.png", "sequence length T", "seconds per sequence",
                                f"inference cost at length ({first['task']}, batch 1, no grad)"))
    return paths
