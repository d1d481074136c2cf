"""Score generated answers against the golden set's reference answers.

Three metrics, chosen per workspace: normalized exact match (for tasks with one
right answer: a date, a label, a number), chrF (character n-gram F-score, via
sacrebleu: partial credit for free text, in any script) and JSON field match
(the share of the reference object's fields the answer gets exactly right: for
extraction tasks). Every score is per item in [0, 1], so the gate can pair them:
McNemar's exact test on exact match, a paired bootstrap on the others.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from datawheel.artifacts import LabelledSet
from datawheel.stages.significance import bootstrap_ci, mcnemar_exact, paired_bootstrap
from datawheel.tasks.chat import Conversation, normalize_answer
from datawheel.tasks.language_model import Generator

_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _json_object(text: str) -> dict | None:
    for candidate in (text, *(m.group(0) for m in _OBJECT.finditer(text))):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def json_field_match(answer: str, reference: str) -> float:
    """Share of the reference object's fields whose values the answer's object has equal; 0 if none parses."""
    ref, got = _json_object(reference), _json_object(answer)
    if ref is None:
        return float(normalize_answer(answer) == normalize_answer(reference))
    if got is None or not ref:
        return float(got == ref)
    return sum(1 for k, v in ref.items() if k in got and got[k] == v) / len(ref)


def score_answers(metric: str, answers: Sequence[str], references: Sequence[str]) -> np.ndarray:
    if metric == "exact":
        return np.array([float(normalize_answer(a) == normalize_answer(r)) for a, r in zip(answers, references)])
    if metric == "chrf":
        from sacrebleu.metrics import CHRF

        chrf = CHRF()
        return np.array([chrf.sentence_score(a, [r]).score / 100 for a, r in zip(answers, references)])
    if metric == "json":
        return np.array([json_field_match(a, r) for a, r in zip(answers, references)])
    raise ValueError(f"unknown metric {metric!r}")


@dataclass(frozen=True)
class TextScores:
    """A model's answer and score per golden item: what the gate pairs and the report shows."""

    answers: list[str]
    scores: np.ndarray


def generate_answers(lm: Generator, conversations: Sequence[Conversation], *, max_new_tokens: int,
                     batch_size: int) -> list[str]:
    """Greedy answers, in batches of similar length so padding stays small."""
    order = sorted(range(len(conversations)), key=lambda i: len(conversations[i][-1][1]))
    out: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        for i, answers in zip(chunk, lm.generate([conversations[i] for i in chunk], max_new_tokens=max_new_tokens)):
            out[i] = answers[0].text
    return [out[i] for i in range(len(conversations))]


def evaluate(lm: Generator, golden: LabelledSet, conversations: Sequence[Conversation], metric: str, *,
             max_new_tokens: int, batch_size: int) -> TextScores:
    answers = generate_answers(lm, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return TextScores(answers, score_answers(metric, answers, golden.labels))


def metrics(scores: TextScores, metric: str, meta: list[dict[str, str]] | None) -> dict:
    """Mean score with its bootstrap interval, and the same per slice of the golden set's metadata."""
    values = scores.scores
    lo, hi = bootstrap_ci(values)
    slices: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(meta or []):
        for key, value in m.items():
            slices[f"{key}={value}"].append(i)
    return {"metric": metric, "score": float(values.mean()) if len(values) else 0.0, "score_ci": [lo, hi],
            "n": len(values),
            "slices": {name: {"n": len(idx), "score": float(values[idx].mean())}
                       for name, idx in sorted(slices.items())}}


def paired_test(metric: str, candidate: TextScores, champion: TextScores) -> dict:
    """McNemar's exact test where scores are 0/1 (exact match), else a paired bootstrap."""
    if metric == "exact":
        return {"test": "mcnemar_exact", **mcnemar_exact(candidate.scores >= 1, champion.scores >= 1)}
    return {"test": "paired_bootstrap", **paired_bootstrap(candidate.scores, champion.scores)}
