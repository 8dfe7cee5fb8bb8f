"""The ``recall.md`` tables and the two plots of ``linmix bench recall`` (see :mod:`linmix.bench.recall`)."""
from __future__ import annotations

from pathlib import Path

from linmix.bench.report import md_table, sections, targets_markdown


#: Zoology (arXiv 2312.04927) Figure 2, 2-layer models, read off the published plot (about +-0.05): MQAR accuracy
#: by (T, kv, d_model); attention is about 0.98 at every size
ZOOLOGY_ANCHORS: dict[tuple[int, int, int], dict[str, float]] = {
    (128, 8, 64): {"attention": 0.98, "Hyena": 0.20, "RWKV": 0.18, "H3": 0.25, "BaseConv": 0.37},
    (256, 16, 128): {"attention": 0.98, "Hyena": 0.14, "RWKV": 0.07, "H3": 0.63, "BaseConv": 0.33},
}
#: linmix models that contain softmax attention over the whole context or a window (the rest are O(T)-free of it)
_ATTENTION_MIXERS = ("attention", "local_attention", "window_linear_attention")


def _mixer_names(model: str) -> set[str]:
    """The kinds of layer in a model's layer string (options with commas inside parentheses stay whole)."""
    from linmix.models.spec import parse_layer_specs

    return {s.name for s in parse_layer_specs(model)}


def _has_attention(model: str) -> bool:
    return bool(_mixer_names(model) & set(_ATTENTION_MIXERS))


def anchors_table(rows: list[dict]) -> str | None:
    """Zoology's anchors beside linmix at the same (T, kv, d_model): attention, the best model without any
    softmax attention, and the best hybrid; ``None`` when no measured size has an anchor."""
    body = []
    for (T, kv, d), theirs in ZOOLOGY_ANCHORS.items():
        mine = [r for r in finished(rows) if (r["T"], r["kv"], r["d_model"]) == (T, kv, d)]
        if not mine:
            continue
        pure = [r for r in mine if r["model"] == "attention"]
        free = [r for r in mine if not _has_attention(r["model"])]
        mixed = [r for r in mine if len(_mixer_names(r["model"])) > 1]

        def best(group: list[dict]) -> str:
            top = max(group, key=lambda r: r["accuracy"], default=None)
            return "not run" if top is None else f"{top['accuracy']:.3f} (`{top['model']}`)"

        body.append([f"T={T}, kv={kv}, d={d}", ", ".join(f"{k} {v:.2f}" for k, v in theirs.items()),
                     best(pure), best(free), best(mixed)])
    if not body:
        return None
    return ("Zoology's Figure 2 (2-layer models, read off the published plot, about ±0.05; Hyena and H3 are gated "
            "long convolutions like `spectral(gate=true)`, RWKV a linear recurrence like `linear_attention`) "
            "beside linmix's measured cells at the same size; linmix's budget and positions are its own (above).\n\n"
            + md_table(["size", "Zoology", "linmix attention", "linmix best without softmax attention",
                        "linmix best hybrid"], body))


def finished(rows: list[dict]) -> list[dict]:
    """The measured records (``--report-only`` also lists the planned runs not run yet)."""
    return [r for r in rows if r.get("status") == "ok"]


def _sizes(rows: list[dict]) -> list[tuple[int, int]]:
    return sorted({(r["T"], r["kv"]) for r in rows})


def _groups(rows: list[dict]) -> list[tuple[int, bool]]:
    return list(dict.fromkeys((r["d_model"], r["mlp"]) for r in rows))


def _acc(r: dict) -> str:
    text = f"{r['accuracy']:.3f}" + (f" ± {r['accuracy_std']:.3f}" if r["seeds"] > 1 else "")
    return text + (f" (chance {r['chance']:.2f})" if r["at_chance"] else "")


def _steps(r: dict) -> str:
    if r["steps_to_target"] is None:
        return "not reached"
    return f"{r['steps_to_target']:.0f}" + (f" ({r['reached']})" if r["seeds"] > 1 else "")


def _table(rows: list[dict], d: int, mlp: bool, cell) -> str:
    mine = [r for r in rows if r["d_model"] == d and r["mlp"] == mlp]
    sizes = _sizes(mine)
    by = {(r["model"], r["T"], r["kv"]): r for r in mine}
    body = [[f"`{m}`"] + [cell(by[(m, T, kv)]) if (m, T, kv) in by else "" for T, kv in sizes]
            for m in dict.fromkeys(r["model"] for r in mine)]
    return md_table(["model"] + [f"T={T}, kv={kv}" for T, kv in sizes], body)


def _bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def missing_runs(missing: list[dict]) -> str:
    """The planned runs not run, one entry per (model, size, width): its learning rates, each with its seeds."""
    groups: dict[tuple, dict[float, list[int]]] = {}
    for r in missing:
        key = (r["model"], r["T"], r["kv"], r["d_model"])
        groups.setdefault(key, {}).setdefault(float(r["lr"]), []).append(r["seed"])
    return "; ".join(
        f"`{m}` (T={T}, kv={kv}, d={d}) " + ", ".join(
            f"lr {lr:g} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))}"
            for lr, seeds in lrs.items())
        for (m, T, kv, d), lrs in groups.items())


def markdown(result: dict) -> str:
    """Accuracy (mean ± spread over seeds, best LR), steps to the target, state bytes, ceilings, targets."""
    cfg, summary = result["meta"]["config"], result["summary"]
    rows, missing = finished(result["rows"]), [r for r in result["rows"] if r["status"] != "ok"]
    excluded = "; ".join(f"`{m}`: {why}" for m, why in summary.get("excluded", {}).items()) or "none"
    check = summary.get("harness_check")
    intro = (f"2-layer causal LMs, vocabulary {cfg['vocab_size']} (keys {1}..{cfg['vocab_size'] // 2 - 1}, values "
             f"{cfg['vocab_size'] // 2}..{cfg['vocab_size'] - 1}), query slots from a power law a={cfg['power_a']}, "
             f"{'random' if cfg['random_filler'] else 'zero'} filler; AdamW (wd {cfg['weight_decay']}), batch "
             f"{cfg['batch_size']}, up to {cfg['max_steps']} steps, {cfg['warmup_steps']} warm-up then "
             f"{cfg['schedule']}, learning rates {cfg['lrs']} (best reported), {cfg['seeds']} seed(s); early stop at "
             f"{cfg['target_accuracy']} on {cfg['val_examples']} fixed validation examples, accuracy on "
             f"{cfg['test_examples']} fixed test examples (both hashed from the generator config). "
             f"{cfg['n_heads']} head(s), {cfg['positional']} positions, MLP {cfg['ffn_mult']}D when on. "
             f"Chance = 1/kv (a guess among the example's values); a cell within noise of it says so.\n\n"
             f"Excluded: {excluded}.\n\nCut: {cfg.get('cut_note') or 'nothing'}.")
    if missing:
        intro += (f"\n\nNot run yet ({len(missing)} planned runs: the grid was stopped; a rerun of the command "
                  "without --report-only resumes it): " + missing_runs(missing) + ". A model's cells below are the "
                  "best over the learning rates it has run with the most seeds, each scored by its mean over the runs "
                  "made at it (see lr_scores in recall.csv).")
    if check:
        intro += (f"\n\nHarness check (attention, d=64, T=128, kv=8): {check['accuracy']:.3f} vs "
                  f"{check['target']}: {'passed' if check['passed'] else 'FAILED'}.")
    parts = [("", intro)]
    for d, mlp in _groups(rows):
        tag = f"d={d}, {'with' if mlp else 'without'} MLP"
        parts.append((f"Test accuracy ({tag})", _table(rows, d, mlp, _acc)))
        parts.append((f"Steps to {cfg['target_accuracy']} validation accuracy ({tag})", _table(rows, d, mlp, _steps)))
    state = {(r["model"], r["d_model"], r["T"]): r["state_bytes"] for r in rows}
    lengths = sorted({k[2] for k in state})
    body = [[f"`{m}`", d] + [_bytes(state.get((m, d, T))) for T in lengths]
            for m, d in dict.fromkeys((k[0], k[1]) for k in state)]
    parts.append(("Decoding state after a length-T prompt (all layers)",
                  md_table(["model", "d_model"] + [f"T={T}" for T in lengths], body)))
    local = [r for r in rows if r.get("ceiling") is not None]
    if local:
        parts.append(("Windowed attention: score beside its window's ceiling",
                      "Ceiling: the share of test queries whose pair's value token lies inside the last layer's "
                      "softmax window (a one-hop read); two stacked windows could in principle reach further, and "
                      "`window_linear_attention`'s linear part reads every older token.\n\n"
                      + md_table(["model", "d_model", "MLP", "T", "kv", "window", "accuracy", "ceiling"],
                                 [[f"`{r['model']}`", r["d_model"], "on" if r["mlp"] else "off", r["T"], r["kv"],
                                   r["window"], f"{r['accuracy']:.3f}", f"{r['ceiling']:.3f}"] for r in local])))
    anchors = anchors_table(result["rows"])
    if anchors:
        parts.append(("Beside Zoology's anchors", anchors))
    parts.append(("Targets", targets_markdown(summary["targets"])))
    return sections(*parts)


def plot(result: dict, out: Path) -> list[Path]:
    """``recall_accuracy_vs_state.png`` (one panel per size, log x) and ``recall_accuracy_vs_kv.png``.

    Each point is a model's best-LR mean with its seeds' min..max as an error bar; the dotted line is chance (1/kv).
    The kv plot uses the largest T measured at two or more kv; with none, every size, marked by its T.
    """
    from linmix.bench import plots  # noqa: F401  (Agg backend)
    import matplotlib.pyplot as plt

    rows = finished(result["rows"])
    models = list(dict.fromkeys(r["model"] for r in rows))
    palette = plt.get_cmap("tab20").colors
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # the ten dark shades, then their light partners
    colors = {m: palette[order[i % 20]] for i, m in enumerate(models)}
    markers = {m: "osD^v<>ph*"[i // 20 % 10] for i, m in enumerate(models)}
    sizes = _sizes(rows)
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes) + 2.5, 4.6), squeeze=False, sharey=True)
    for ax, (T, kv) in zip(axes[0], sizes):
        for r in (r for r in rows if (r["T"], r["kv"]) == (T, kv) and r["state_bytes"]):
            _point(ax, r["state_bytes"], r, colors[r["model"]], markers[r["model"]],
                   f"{r['model']} d={r['d_model']}{' MLP' if r['mlp'] else ''}")
        ax.axhline(1 / kv, linestyle=":", color="0.5", label="chance (1/kv)")
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        if hi / lo < 20:  # widen a narrow panel to 1.3 decades around its middle, so it has labelled powers of ten
            mid = (lo * hi) ** 0.5
            ax.set_xlim(mid / 4.5, mid * 4.5)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        _style(ax, "decoding state after the prompt (bytes)", f"T={T}, kv={kv}")
    paths = [_save(fig, axes[0][0], "accuracy vs decoding-state size", out / "recall_accuracy_vs_state.png")]

    multi = [T for T in {r["T"] for r in rows} if len({r["kv"] for r in rows if r["T"] == T}) > 1]
    chosen = [r for r in rows if r["T"] == max(multi)] if multi else rows
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for key in dict.fromkeys((r["model"], r["d_model"], r["mlp"]) for r in chosen):
        pts = sorted((r for r in chosen if (r["model"], r["d_model"], r["mlp"]) == key), key=lambda r: r["kv"])
        for i, r in enumerate(pts):
            _point(ax, r["kv"], r, colors[key[0]], markers[key[0]],
                   f"{key[0]} d={key[1]}{' MLP' if key[2] else ''}" if i == 0 else None)
        if len(pts) > 1:
            ax.plot([r["kv"] for r in pts], [r["accuracy"] for r in pts], color=colors[key[0]], linewidth=1)
    kvs = sorted({r["kv"] for r in chosen})
    ax.plot(kvs, [1 / kv for kv in kvs], linestyle=":", color="0.5", marker="_", label="chance (1/kv)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(kvs, [str(kv) for kv in kvs])
    title = f"accuracy vs kv at T={max(multi)}" if multi else (
        "accuracy vs kv (one kv per T measured: " + ", ".join(f"T={T}, kv={kv}" for T, kv in sizes) + ")")
    _style(ax, "key-value pairs kv", "")
    paths.append(_save(fig, ax, title, out / "recall_accuracy_vs_kv.png"))
    return paths


def _point(ax, x: float, r: dict, color: str, marker: str, label: str | None) -> None:
    """One model's best-LR mean, with the min..max over its seeds as a vertical bar when there are several."""
    lo, hi = r.get("accuracy_min", r["accuracy"]), r.get("accuracy_max", r["accuracy"])
    ax.errorbar([x], [r["accuracy"]], yerr=[[r["accuracy"] - lo], [hi - r["accuracy"]]], fmt=marker,
                color=color, capsize=3, markersize=6, label=label)


def _style(ax, xlabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylim(-0.02, 1.02)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)


def _save(fig, ax, title: str, path: Path) -> Path:
    """Accuracy label on the first axis, one legend outside the plot (duplicates dropped); save and close."""
    import matplotlib.pyplot as plt

    ax.set_ylabel("MQAR test accuracy (bars: min..max over seeds)")
    handles: dict = {}
    for a in fig.axes:
        for h, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
