"""Curation for text generation: consented exchanges in, an SFT, a DPO and a KTO set out, in one snapshot.

Order: quality filters (blank or placeholder-only prompts) → golden prompts
out (exact and near copies: never trained on, but their references measure how
reliable each user's corrections are) → near-duplicate prompts merged (MinHash)
→ one target per prompt from the votes of reliable users
(``curation/preferences.py``) → target filters (empty, over-long, only
placeholders, a different language from the prompt) → the three sets:

- **SFT**: (conversation, target) per prompt: a correction or an answer reliable users rated up or picked;
- **DPO**: (conversation, chosen, rejected): target ≻ an answer it replaced, picked ≻ not picked of two,
  rated up ≻ rated down on the same prompt;
- **KTO**: (conversation, answer, desirable): each answer a reliable user rated, up or down.

Every record gets a verdict with a reason code, as for classifiers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from datawheel.artifacts import Exchange, LabelledSet, Verdict
from datawheel.curation.preferences import Choice, Vote, choose_targets, reliability
from datawheel.tasks.chat import Conversation, TextGeneration, answer_issue, normalize_answer, prompt_text

STAGE = "curate"
SNAPSHOT_SCHEMA = pa.schema([
    ("kind", pa.string()), ("input", pa.binary()), ("label", pa.string()), ("rejected", pa.string()),
    ("desirable", pa.bool_()), ("content_hash", pa.string()), ("confidence", pa.float64()),
    ("record_ids", pa.list_(pa.string())), ("user_refs", pa.list_(pa.string()))])


@dataclass
class ChatCurated:
    rows: list[dict]
    verdicts: list[Verdict]
    reliability: dict[str, float]
    excluded: set[str]

    def counts(self) -> dict[str, int]:
        out = {"sft": 0, "dpo": 0, "kto": 0}
        for row in self.rows:
            out[row["kind"]] += 1
        return out

    def table(self, user_ref: Callable[[str], str]) -> pa.Table:
        """The Parquet view: users by keyed pseudonym only (lineage to ids lives in the store)."""
        rows = [{**r, "user_refs": sorted({user_ref(u) for u in r["user_ids"]})} for r in self.rows]
        return pa.Table.from_pylist([{k: r[k] for k in SNAPSHOT_SCHEMA.names} for r in rows], SNAPSHOT_SCHEMA)


def _groups(task: TextGeneration, convs: list[Conversation], seed: LabelledSet,
            golden: LabelledSet) -> tuple[list[int], dict[int, str], set[int]]:
    """Cluster id per exchange, the trusted reference per cluster, and the clusters holding a golden prompt."""
    golden_convs = [task.decode(b) for b in golden.inputs]
    seed_convs = [task.decode(b) for b in seed.inputs]
    clusters = task.near_duplicate_clusters(golden_convs + seed_convs + convs)
    references: dict[int, str] = {}
    for cid, ref in zip(clusters, golden.labels + seed.labels):
        references.setdefault(cid, ref)
    return clusters[len(golden_convs) + len(seed_convs):], references, set(clusters[:len(golden_convs)])


def _votes(exchanges: list[Exchange], groups: list[int],
           accepted_versions: set[str]) -> tuple[list[Vote], list[tuple[int, str, str, bool]]]:
    """Positive votes (corrections, answers rated up or picked, and an unrated answer of ``accepted_versions``:
    distillation from an upstream) and every rating as (group, user, answer, up)."""
    votes: list[Vote] = []
    ratings: list[tuple[int, str, str, bool]] = []
    for ex, group in zip(exchanges, groups):
        if not ex.feedback and ex.model_version in accepted_versions and ex.answers:
            votes.append(Vote(group, ex.user_id, ex.answers[0], "accepted"))
        for fb in ex.feedback:
            shown = ex.answers[fb.chosen] if fb.chosen is not None else ex.answers[0]
            if fb.correction:
                votes.append(Vote(group, fb.user_id, fb.correction, "correction"))
            if fb.chosen is not None:
                votes.append(Vote(group, fb.user_id, shown, "chosen"))
            elif fb.rating == 1 and not fb.correction:
                votes.append(Vote(group, fb.user_id, shown, "rated_up"))
            if fb.rating in (-1, 1):
                ratings.append((group, fb.user_id, shown, fb.rating == 1))
    return votes, ratings


def curate_chat(exchanges: list[Exchange], seed: LabelledSet, golden: LabelledSet, task: TextGeneration, *,
                min_reliability: float, max_answer_chars: int,
                accepted_versions: set[str] | None = None) -> ChatCurated:
    """``accepted_versions``: model versions whose answers count as accepted unless a user objected (the
    upstream's, when ``[upstream] distill_unrated``)."""
    verdicts: list[Verdict] = []
    usable: list[Exchange] = []
    for ex in exchanges:
        issue = task.quality_issue(task.decode(ex.input))
        if issue:
            verdicts.append(Verdict(ex.record_id, STAGE, False, issue))
        else:
            usable.append(ex)
    convs = [task.decode(ex.input) for ex in usable]
    groups, references, golden_groups = _groups(task, convs, seed, golden)
    votes, ratings = _votes(usable, groups, accepted_versions or set())
    weights = reliability(votes, normalize_answer, references)
    excluded = {u for u, w in weights.items() if w < min_reliability}
    choices = choose_targets([v for v in votes if v.group not in golden_groups], normalize_answer, weights,
                             min_reliability)
    out = ChatCurated([], verdicts, weights, excluded)
    members: dict[int, list[Exchange]] = defaultdict(list)
    first: dict[int, Conversation] = {}
    for ex, conv, group in zip(usable, convs, groups):
        members[group].append(ex)
        first.setdefault(group, conv)
    for group, group_exchanges in members.items():
        _rows_for_group(out, task, group, first[group], group_exchanges, choices.get(group),
                        [r for r in ratings if r[0] == group], golden_groups, set(golden.hashes), max_answer_chars)
    return out


def _rows_for_group(out: ChatCurated, task: TextGeneration, group: int, conv: Conversation,
                    exchanges: list[Exchange], choice: Choice | None, ratings: list[tuple[int, str, str, bool]],
                    golden_groups: set[int], golden_hashes: set[str], max_chars: int) -> None:
    """Append a group's SFT, DPO and KTO rows and give each of its records a verdict."""
    def reject(reason: str) -> None:
        out.verdicts.extend(Verdict(ex.record_id, STAGE, False, reason) for ex in exchanges)

    if group in golden_groups:  # never trained on; its votes only measured their users against the reference
        out.verdicts.extend(Verdict(ex.record_id, STAGE, False, "in_golden_set" if ex.content_hash in golden_hashes
                                    else "near_golden_set") for ex in exchanges)
        return
    trusted = [r for r in ratings if r[1] not in out.excluded]
    target = choice.text if choice is not None else None
    issue = answer_issue(prompt_text(conv), target, max_chars) if target is not None else None
    if issue:
        return reject(issue)
    data, digest = task.encoded(conv)
    base = {"input": data, "content_hash": digest,
            "record_ids": sorted(ex.record_id for ex in exchanges),
            "user_ids": {ex.user_id for ex in exchanges}}
    n_before = len(out.rows)
    if target is not None and choice is not None:
        out.rows.append({**base, "kind": "sft", "label": target, "rejected": None, "desirable": None,
                         "confidence": round(choice.weight, 4)})
        _dpo_rows(out, base, target, exchanges, trusted, max_chars, prompt_text(conv))
    seen: set[tuple[str, bool]] = set()
    for _, _, answer, up in trusted:
        key = (normalize_answer(answer), up)
        if key not in seen and answer.strip():
            seen.add(key)
            out.rows.append({**base, "kind": "kto", "label": answer, "rejected": None, "desirable": up,
                             "confidence": 1.0})
    if len(out.rows) == n_before:
        excluded_only = all(ex.user_id in out.excluded for ex in exchanges)
        return reject("unreliable_user" if excluded_only else "no_target")
    for ex in exchanges:
        accepted = ex.user_id not in out.excluded
        out.verdicts.append(Verdict(ex.record_id, STAGE, accepted, "curated" if accepted else "unreliable_user"))


def _dpo_rows(out: ChatCurated, base: dict, target: str, exchanges: list[Exchange],
              trusted: list[tuple[int, str, str, bool]], max_chars: int, prompt: str) -> None:
    """Preference pairs: the target over answers it replaced, picked over not picked, up over down."""
    pairs: list[tuple[str, str]] = []
    for ex in exchanges:
        for fb in ex.feedback:
            if fb.user_id in out.excluded:
                continue
            if fb.correction or fb.rating == -1:
                pairs += [(target, a) for a in ex.answers[:1]]
            if fb.chosen is not None and len(ex.answers) > 1:
                pairs.append((ex.answers[fb.chosen], ex.answers[1 - fb.chosen]))
    ups = [a for _, _, a, up in trusted if up]
    pairs += [(u, d) for u in ups for _, _, d, up in trusted if not up]
    seen: set[tuple[str, str]] = set()
    for chosen, rejected in pairs:
        key = (normalize_answer(chosen), normalize_answer(rejected))
        if key[0] == key[1] or key in seen or answer_issue(prompt, chosen, max_chars):
            continue
        seen.add(key)
        out.rows.append({**base, "kind": "dpo", "label": chosen, "rejected": rejected, "desirable": None,
                         "confidence": 1.0})
