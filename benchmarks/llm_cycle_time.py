"""How long one text-generation cycle takes on N corrected exchanges, stage by stage, on the real base model.

    python benchmarks/llm_cycle_time.py [--exchanges 1000] [--distinct 1000] [--golden 100]
                                        [--precision auto,float32] [--preference dpo|kto|none]

Issue 13's target: a cycle on 1,000 corrected exchanges completes in 10 minutes on 2 cores. The workspace is
the date-normalizing task of ``llm_flywheel.py`` (English and Chinese prompts; exact match). v1 (from
``init``) answers ``--exchanges`` prompts, drawn from ``--distinct`` distinct ones, in batches; each exchange
gets its user's feedback as in ``llm_flywheel.py`` (honest users correct wrong answers and rate right ones up,
careless ones give a wrong date half of the time, an adversarial group pushes one wrong date, some users
never consent). The answers are generated in batches and stored directly, not over HTTP: this measures the
cycle, not serving. Then one cycle runs per ``--precision`` on copies of the same workspace, so the
precisions are compared on the same data in the same run. Prints a Markdown table: rows in, SFT/DPO rows,
SFT and preference seconds, training tokens/s, the rest of the cycle (curation, scoring the golden set with
both models, gate), the whole cycle, and the candidate's golden exact match.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from llm_flywheel import WRONG, population, write_sets


def fill(ws_root: Path, prompts: list[tuple[str, str]], n: int, rng: random.Random) -> dict[str, int]:
    """``n`` exchanges answered by the champion, each with its user's feedback; counts by feedback kind."""
    from datawheel.models.adapters import AdapterRegistry
    from datawheel.workspace import Workspace

    ws = Workspace.open(ws_root)
    task, store = ws.task, ws.store
    lm = AdapterRegistry(ws).load_lm(store.aliases()["champion"])
    users = population(rng)
    asked = [rng.choice(prompts) for _ in range(n)]
    counts = {"corrections": 0, "ratings_up": 0, "adversarial": 0}
    for start in range(0, n, 32):
        batch = asked[start:start + 32]
        convs = [task.parse({"messages": [{"role": "user", "content": p}]}) for p, _ in batch]
        answers = lm.generate(convs, max_new_tokens=16)
        for conv, (_, truth), (answer,) in zip(convs, batch, answers):
            user, kind = rng.choice(users)
            record_id, done = store.submit_exchange(
                user_id=user, input=task.encode(conv), content_hash=task.content_hash(conv), answers=[answer.text],
                consent={"training": kind != "no_consent"}, model_name="datawheel", model_version="1")
            done.result()
            rating, correction = None, None
            if kind == "adversarial":
                rating, correction = -1, WRONG
                counts["adversarial"] += 1
            elif kind == "careless" and rng.random() < 0.5:
                correction = f"{rng.randint(1950, 2035)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            elif answer.text.strip() == truth:
                rating = 1
                counts["ratings_up"] += 1
            else:
                rating, correction = -1, truth
            counts["corrections"] += correction is not None
            store.add_answer_feedback(record_id=record_id, user_id=user, rating=rating, correction=correction,
                                      chosen=None, comment=None)
    store.close()
    return counts


def one_cycle(ws_root: Path, precision: str, preference: str) -> dict:
    import tomllib

    import tomli_w

    from datawheel.wheel.cycle import run_cycle
    from datawheel.workspace import Workspace

    path = ws_root / "datawheel.toml"
    raw = tomllib.loads(path.read_text())
    raw["generation"] = {**raw.get("generation", {}), "train_precision": precision, "preference": preference}
    path.write_text(tomli_w.dumps(raw))
    ws = Workspace.open(ws_root)
    cycle_id = ws.store.start_cycle(trigger="benchmark")
    t0 = time.perf_counter()
    report = run_cycle(ws, cycle_id)
    report["wall_seconds"] = time.perf_counter() - t0
    report["train_info"] = ws.store.get_model(report["candidate_version"])["train_info"] \
        if report.get("candidate_version") else {}
    ws.store.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exchanges", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=1000, help="distinct prompts the exchanges are drawn from")
    parser.add_argument("--golden", type=int, default=100)
    parser.add_argument("--seed-size", type=int, default=12)
    parser.add_argument("--precision", default="auto,float32", help="comma-separated: auto, float32, bfloat16")
    parser.add_argument("--preference", default="dpo", choices=["dpo", "kto", "none"])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from datawheel.precision import native_bf16
    from datawheel.wheel.init import init_workspace

    rng = random.Random(13)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dw-cycle-time-"))
    pool, seed, golden = write_sets(work / "data", args.seed_size, args.golden, args.distinct, rng)
    t0 = time.perf_counter()
    ws = init_workspace(work / "ws", task="text-generation", labels=(), seed_data=seed, eval_data=golden)
    ws.store.close()
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts = fill(work / "ws", pool, args.exchanges, rng)
    fill_s = time.perf_counter() - t0
    print(f"init {init_s:.0f} s; {args.exchanges} exchanges answered by v1 and given feedback in {fill_s:.0f} s "
          f"({counts}); CPU has native bfloat16: {native_bf16()}", flush=True)

    rows = []
    for precision in args.precision.split(","):
        copy = work / f"ws-{precision}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(work / "ws", copy)
        r = one_cycle(copy, precision, args.preference)
        info = r["train_info"]
        sft_s, pref_s = r.get("training_seconds", 0.0), info.get("preference_seconds", 0.0)
        rows.append((precision, info.get("precision", "-"), r["records_in"], r["snapshot"].get("sft", 0),
                     r["snapshot"].get("dpo", 0), info.get("preference_rows", 0), sft_s,
                     info.get("tokens_per_s", 0.0), pref_s, r["wall_seconds"] - sft_s - pref_s, r["wall_seconds"],
                     (r.get("candidate_metrics") or {}).get("score"), r["decision"]))
        print(f"cycle with precision {precision}: {r['wall_seconds']:.0f} s, {r['decision']}", flush=True)

    print()
    print("| precision | ran as | exchanges in | SFT rows | DPO rows | preference rows | SFT s | SFT tokens/s "
          "| preference s | rest s | cycle s | candidate golden exact | decision |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p, ran, n_in, sft, dpo, prows, sft_s, tps, pref_s, rest, total, score, decision in rows:
        golden_s = "-" if score is None else f"{score:.1%}"
        print(f"| {p} | {ran} | {n_in} | {sft} | {dpo} | {prows} | {sft_s:.0f} | {tps:.0f} | {pref_s:.0f} "
              f"| {rest:.0f} | {total:.0f} | {golden_s} | {decision} |")
    if len(rows) > 1:
        print(f"\ncycle time {rows[0][0]} / {rows[-1][0]}: {rows[0][10] / rows[-1][10]:.2f}x")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
