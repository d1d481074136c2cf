"""Model cards (after Mitchell et al., "Model Cards for Model Reporting"): one Markdown file per version.

Written when a version is registered, beside its weights (``models/v7.card.md``),
so whoever finds a model file can read what it was trained on, how well it did
with what uncertainty, how the gate judged it, and where it is weak.
"""

from __future__ import annotations

from pathlib import Path

from datawheel.artifacts import atomic_write_bytes

#: classes below this recall are listed as known weaknesses
WEAK_RECALL = 0.9
#: what a model family costs and earns, as measured, so a card says whether the dearer model was worth it
FAMILY_NOTES = {
    "minilm-finetune": (
        "- Fine-tuning earns its cost where the frozen encoder misses the labels' sense: on Rotten Tomatoes "
        "(benchmarks/text_models.py, 3,890 training snippets, one CPU thread) 3 epochs reached 79.0 % against "
        "73.5 % for the frozen encoder + head (+5.5 points), for 890 s of training against 79 s. Compare it "
        "with a `minilm-head` or `tfidf` candidate on this golden set before paying for it every cycle.",
    ),
}


def render(*, version: int, task: str, labels: tuple[str, ...], train_info: dict, metrics: dict,
           dataset_id: str | None, seed_items: int, parent: int | None, decision: dict | None) -> str:
    lo, hi = metrics.get("accuracy_ci95", [metrics["accuracy"], metrics["accuracy"]])
    n = metrics["n"]
    recall = metrics["per_class_recall"]
    weak = [f"`{lab}` ({r:.1%})" for lab, r in recall.items() if r < WEAK_RECALL]
    lines = [
        f"# Model card: v{version}",
        "",
        f"- task: {task}; labels: {', '.join(labels)}",
        _architecture(train_info),
        f"- trained on: {train_info.get('examples')} examples — the seed set ({seed_items})"
        + (f" plus snapshot `{dataset_id}` (see its datasheet)" if dataset_id else " only"),
        _validation(train_info)
        + ("; augmented" if train_info.get("augment") else "")
        + (f"; warm-started from v{train_info['warm_start_from']}" if train_info.get("warm_start_from") else ""),
        f"- parent: {'none' if parent is None else f'v{parent}'}",
        "",
        "## Golden-set evaluation",
        "",
        f"Accuracy {metrics['accuracy']:.2%} (95 % bootstrap interval {lo:.2%} – {hi:.2%}), "
        f"macro-F1 {metrics['macro_f1']:.4f}, expected calibration error {metrics.get('ece', float('nan')):.4f}, "
        f"on {n} items (one item is {1 / max(n, 1):.2%}).",
        "",
        "| class | recall |",
        "|---|---|",
        *[f"| {lab} | {r:.2%} |" for lab, r in recall.items()],
        "",
    ]
    slices = metrics.get("slices") or {}
    if slices:
        lines += ["| slice | golden items | accuracy |", "|---|---|---|",
                  *[f"| {name} | {s['n']} | {s['accuracy']:.2%} |" for name, s in slices.items()], ""]
    if decision:
        m = decision.get("mcnemar") or {}
        lines += ["## Gate", "", f"Decision: **{decision['decision']}**.", "",
                  *[f"- {reason}" for reason in decision["decision_reasons"]]]
        if m:
            lines += [f"- against the champion: right on {m['only_candidate']} items it missed, wrong on "
                      f"{m['only_champion']} it got right (McNemar exact p = {m['p_value']:.3g})"]
        lines.append("")
    lines += ["## Known limits", "",
              "- Measured on the workspace's golden set only; other populations may differ.",
              f"- Classes below {WEAK_RECALL:.0%} recall: {', '.join(weak) if weak else 'none'}.",
              f"- Slices below {WEAK_RECALL:.0%} accuracy: "
              + (", ".join(f"`{k}` ({s['accuracy']:.1%}, {s['n']} items)" for k, s in slices.items()
                           if s["accuracy"] < WEAK_RECALL) or "none") + "." if slices
              else "- The golden set carries no slice metadata, so no group of users was measured apart.",
              "- Trained on user-labelled data after curation; remaining label noise is estimated in the "
              "snapshot's datasheet." if dataset_id else "- Trained on the seed set only.",
              *FAMILY_NOTES.get(str(train_info.get("model_name")), ()),
              ""]
    return "\n".join(lines)


def _architecture(info: dict) -> str:
    if info.get("estimator"):  # a scikit-learn pipeline: fitted in one call, no optimizer or epochs of ours
        return (f"- architecture: `sklearn`, the estimator `{info['estimator']}` fitted by scikit-learn "
                f"(stored with skops, not pickle), seed {info.get('seed')}")
    # bfloat16 is named: the weights then differ (within run-to-run noise) from a float32 run on another CPU
    precision = "; bfloat16 matrix products while training" if info.get("precision") == "bfloat16" else ""
    return (f"- architecture: `{info.get('model_name')}`; optimizer {info.get('optimizer')}, "
            f"{info.get('schedule')} schedule, {info.get('epochs')} epochs, seed {info.get('seed')}{precision}")


def _validation(info: dict) -> str:
    held = f"- validation: {info.get('validation_examples', 0)} training items held out"
    if not info.get("validation_examples"):
        return held + " (too few to stop early or calibrate)"
    if info.get("estimator"):
        return held + f"; validation accuracy {info.get('final_val_accuracy', 0.0):.2%}; " \
                      f"temperature {info.get('temperature', 1.0):.3f}"
    return held + (f"; ran {info.get('epochs_run')} epochs, kept epoch {info.get('best_epoch')}; "
                   f"temperature {info.get('temperature', 1.0):.3f}")


def card_path(model_path: Path) -> Path:
    return model_path.with_suffix(".card.md")


def write(model_path: Path, text: str) -> Path:
    path = card_path(model_path)
    atomic_write_bytes(path, text.encode())
    return path
