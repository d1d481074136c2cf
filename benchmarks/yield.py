"""How much model quality the same user activity buys: majority vote vs datawheel's curation vs an oracle,
and what 200 annotations buy when the queue chooses them vs when chance does.

    python benchmarks/yield.py [--data PATH [--labels a,b,c]] [--cycles 5] [--per-cycle 300]
                               [--population honest=0.7,careless=0.2,adversarial=0.1]
                               [--budget 200] [--step 40] [--seed 0]

Default data: scikit-learn's bundled digits. --data takes an ImageFolder (labels are its folder
names) or a CSV/JSONL/Parquet file the importers read (then give --labels). A 5 % seed set, a 20 %
golden set, the rest is the pool users draw from.

Per cycle, simulated users drive the product over real HTTP and a cycle runs (b: datawheel). On the
same comply-kept records, two more models are trained by the same trainer on seed + the same items
labelled (a) by majority vote of the votes and (c) with their true labels (the oracle). After the
last cycle the workspace is copied twice; in each, annotations with the true label are added in
steps up to the budget, chosen (d) at random among the queued items or (e) from the top of the
queue, and a cycle runs after each step. Accuracies are on the golden set. No timing targets.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from datawheel.api.app import create_app
from datawheel.artifacts import LabelledSet
from datawheel.client import Client
from datawheel.demo.run import LABELS, BackgroundServer, _free_port, _pool_inputs, digit_splits, write_image_folder
from datawheel.demo.simulate import Simulation, parse_population
from datawheel.importers import load_labelled
from datawheel.settings import Settings
from datawheel.stages.comply import comply
from datawheel.stages.evaluate import evaluate
from datawheel.stages.train import train
from datawheel.tasks.image import ImageClassification
from datawheel.wheel.cycle import run_cycle
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

TARGETS = ("(b) within 0.5 points of (c) after the last cycle; (b) - (a) >= 1.5 points; "
           "(e) - (d) >= 1 point, or (e) reaching (d)'s final accuracy with <= 60 % of the budget")


def splits(args: argparse.Namespace) -> tuple[tuple[str, ...], list, list, list]:
    """(labels, seed, golden, pool) as (uint8 image, label) pairs."""
    if args.data is None:
        s = digit_splits(seed_share=0.05, golden_share=0.20, rng_seed=args.seed)
        return LABELS, s.seed, s.golden, s.pool
    task = ImageClassification()
    path = Path(args.data)
    if args.labels:
        labels = tuple(x.strip() for x in args.labels.split(","))
    elif path.is_dir():
        labels = tuple(sorted(p.name for p in path.iterdir() if p.is_dir()))
    else:
        sys.exit("--labels is needed with a file given as --data")
    data = load_labelled(path, task, labels)
    pairs = [(task.decode(b), lab) for b, lab in data]
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    n_golden, n_seed = int(len(pairs) * 0.20), max(len(labels), int(len(pairs) * 0.05))
    return labels, pairs[n_golden:n_golden + n_seed], pairs[:n_golden], pairs[n_golden + n_seed:]


def accuracy_of(ws: Workspace, items: dict[str, str], seed: LabelledSet, golden: LabelledSet,
                content: dict[str, bytes]) -> float:
    hashes = sorted(items)
    data = seed + LabelledSet([content[h] for h in hashes], [items[h] for h in hashes], hashes)
    model = train(ws.task, data, ws.labels, ws.config.model)
    return evaluate(ws.task, model.module, model.model_name, golden, ws.labels)["accuracy"]


def baselines(ws: Workspace, truth: dict[str, str]) -> tuple[float, float, int]:
    """(majority-vote accuracy, oracle accuracy, items) on the records comply keeps, as curation sees them."""
    records, votes = ws.store.labelled_records()
    kept, _ = comply(records)
    seed, golden = ws.seed(), ws.golden()
    skip = set(seed.hashes) | set(golden.hashes)
    owner = {r.record_id: r.content_hash for r in kept if r.content_hash not in skip}
    content = {r.content_hash: r.input for r in kept}
    by_item: dict[str, Counter] = {}
    for v in votes:
        if v.record_id in owner:
            by_item.setdefault(owner[v.record_id], Counter())[v.label] += 1
    majority = {h: c.most_common(1)[0][0] for h, c in by_item.items()}
    oracle = {h: truth[h] for h in by_item}
    return (accuracy_of(ws, majority, seed, golden, content), accuracy_of(ws, oracle, seed, golden, content),
            len(by_item))


def annotate_arm(root: Path, truth: dict[str, str], budget: int, step: int, by_queue: bool, seed: int) -> list:
    ws = Workspace.open(root)
    rng = random.Random(seed)
    out = []
    spent = 0
    while spent < budget:
        n = min(step, budget - spent)
        queued = ws.store.annotation_queue(100_000)
        chosen = queued[:n] if by_queue else rng.sample(queued, min(n, len(queued)))
        for item in chosen:
            ws.store.annotate(item["item_id"], truth[item["item_id"]], annotator="annotator:benchmark")
        spent += len(chosen)
        report = run_cycle(ws, ws.store.start_cycle("benchmark"))
        out.append((spent, report["candidate_metrics"]["accuracy"]))
        if not chosen:
            break
    ws.store.close()
    return out


def run_once(args: argparse.Namespace, seed: int) -> tuple[list, dict]:
    """One full run on one seed: per-cycle (a, b, c) accuracies and the two annotation arms."""
    args = argparse.Namespace(**{**vars(args), "seed": seed})
    labels, seed_pairs, golden_pairs, pool = splits(args)
    tmp = Path(tempfile.mkdtemp(prefix="datawheel-yield-"))
    try:
        ws = init_workspace(tmp / "ws", task="image-classification", labels=labels,
                            seed_data=write_image_folder(tmp / "seed", seed_pairs),
                            eval_data=write_image_folder(tmp / "golden", golden_pairs))
        pool_inputs = _pool_inputs(pool, np.random.default_rng(seed + 1))
        truth = {ws.task.content_hash(ws.task.parse(inp)): lab for inp, lab in pool_inputs}
        print(f"\n### seed {seed}: seed set {len(seed_pairs)}, golden {len(golden_pairs)}, pool {len(pool)}; "
              f"population {args.population}, {args.users} users, {args.per_cycle} uses per cycle\n")
        print("| cycle | items | (a) majority | (b) datawheel | (c) oracle | (b) champion | b-a | c-b |")
        print("|---|---|---|---|---|---|---|---|")
        app = create_app(ws, Settings())
        port = _free_port()
        rows = []
        with BackgroundServer(app, port), Client(f"http://127.0.0.1:{port}", ws.secrets.app_key) as product, \
                Client(f"http://127.0.0.1:{port}", ws.secrets.admin_key) as operator:
            sim = Simulation(product, pool_inputs, labels, profiles=parse_population(args.population),
                             n_users=args.users, seed=seed)
            for n in range(1, args.cycles + 1):
                sim.run(args.per_cycle)
                state = operator.wait_cycle(operator.start_cycle(), timeout=1800)
                if state.status != "done" or state.report is None:
                    sys.exit(f"cycle {n} failed: {state.error}")
                r = state.report
                a, c, items = baselines(ws, truth)
                b = r["candidate_metrics"]["accuracy"]
                rows.append((a, b, c))
                print(f"| {n} | {items} | {a:.2%} | {b:.2%} | {c:.2%} | {r['champion_accuracy']:.2%} "
                      f"| {100 * (b - a):+.2f} | {100 * (c - b):+.2f} |", flush=True)
        ws.store.close()
        arms = {}
        for name, by_queue in (("random", False), ("queue", True)):
            shutil.copytree(tmp / "ws", tmp / name)
            arms[name] = annotate_arm(tmp / name, truth, args.budget, args.step, by_queue, seed)
        print("\n| annotations | (d) random | (e) queue | e-d |")
        print("|---|---|---|---|")
        for (spent, d), (_, e) in zip(arms["random"], arms["queue"]):
            print(f"| {spent} | {d:.2%} | {e:.2%} | {100 * (e - d):+.2f} |", flush=True)
        return rows, arms
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--labels")
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--per-cycle", type=int, default=300)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--population", default="honest=0.7,careless=0.2,adversarial=0.1")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--step", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3,
                    help="independent runs (seeds seed..seed+N-1); one golden item is worth ~0.3 points, "
                         "so the summary averages them")
    args = ap.parse_args()
    started = time.perf_counter()
    runs = [run_once(args, args.seed + r) for r in range(args.repeats)]
    cycles = np.array([rows for rows, _ in runs])  # [repeats, cycles, 3]
    print(f"\n### mean over {args.repeats} run(s)\n")
    print("| cycle | (a) majority | (b) datawheel | (c) oracle | b-a | c-b |")
    print("|---|---|---|---|---|---|")
    for n, (a, b, c) in enumerate(cycles.mean(axis=0), 1):
        print(f"| {n} | {a:.2%} | {b:.2%} | {c:.2%} | {100 * (b - a):+.2f} | {100 * (c - b):+.2f} |")
    budgets = [spent for spent, _ in runs[0][1]["queue"]]
    d = np.array([[acc for _, acc in arms["random"]] for _, arms in runs]).mean(axis=0)
    e = np.array([[acc for _, acc in arms["queue"]] for _, arms in runs]).mean(axis=0)
    print("\n| annotations | (d) random | (e) queue | e-d |")
    print("|---|---|---|---|")
    for spent, dd, ee in zip(budgets, d, e):
        print(f"| {spent} | {dd:.2%} | {ee:.2%} | {100 * (ee - dd):+.2f} |")
    a, b, c = cycles.mean(axis=0)[-1]
    e_reach = next((spent for spent, ee in zip(budgets, e) if ee >= d[-1]), None)
    annot_met = e[-1] - d[-1] >= 0.01 or (e_reach is not None and e_reach <= 0.6 * args.budget)
    print(f"\ntargets: {TARGETS}")
    print(f"measured (means): c-b {100 * (c - b):+.2f} points ({'met' if c - b <= 0.005 else 'MISSED'}); "
          f"b-a {100 * (b - a):+.2f} points ({'met' if b - a >= 0.015 else 'MISSED'}); "
          f"e-d {100 * (e[-1] - d[-1]):+.2f} points, (e) reached (d)'s final {d[-1]:.2%} after "
          f"{e_reach if e_reach is not None else 'never'} of {args.budget} annotations "
          f"({'met' if annot_met else 'MISSED'})")
    print(f"finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
