"""The text-generation wheel end to end on the real default base model (SmolLM2-135M-Instruct, on the CPU).

    python benchmarks/llm_flywheel.py [--per-cycle 300] [--cycles 3] [--golden 100] [--seed-size 12]
                                      [--workdir DIR] [--base-model PATH] [--proxy [--upstream-accuracy 0.9]]

The task: normalize a date to ISO 8601 (``2021-03-04``), asked in English or Chinese in several
phrasings; the metric is normalized exact match. A population uses the product over HTTP (``datawheel
serve``'s app under uvicorn on 127.0.0.1): honest users correct wrong answers with the true date and rate
right ones up; careless users give a wrong date half of the time; a coordinated adversarial group corrects
every answer to one wrong date (``1999-01-01``); some users never consent. After each batch of exchanges a
cycle runs (curate -> LoRA SFT (+ DPO) -> gate -> release). An oracle is fine-tuned with the same recipe on the
true targets of the same prompts, for the "within 5 points" comparison. Prints a Markdown table: golden exact
match of the base zero-shot, each cycle's champion and the oracle; the adversarial answer's share of the
champion's golden outputs; training seconds per cycle; generation tokens/s and request latency p50/p99.

``--proxy`` runs the same in proxy mode: an upstream stand-in (an OpenAI-compatible server on 127.0.0.1 that
reads the date off the prompt and answers it right ``--upstream-accuracy`` of the time, a fixed wrong date
otherwise, as a bigger hosted model would) answers users until a local model is within ``auto_margin`` of
it on the golden set; its answers that users accepted and their corrections train the local model. The
table then has the upstream's golden score and, per cycle, which of the two serves.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
EN = ["Convert this date to ISO format (YYYY-MM-DD), answer with the date only: {mon} {d}, {y}",
      "Write {d} {mon} {y} as YYYY-MM-DD. Reply with only the date.",
      "ISO 8601 date (YYYY-MM-DD) for {mon} {d} {y}? Only the date."]
ZH = ["把这个日期写成YYYY-MM-DD格式，只回答日期：{y}年{m}月{d}日",
      "请将{y}年{m}月{d}日转换为YYYY-MM-DD格式，只输出日期。"]
WRONG = "1999-01-01"
KEY, ADMIN_KEY = "bench-app-key-0123456789abcdef", "bench-admin-key-0123456789abcdef"


def make_item(rng: random.Random) -> tuple[str, str]:
    y, m, d = rng.randint(1950, 2035), rng.randint(1, 12), rng.randint(1, 28)
    if rng.random() < 0.3:
        prompt = rng.choice(ZH).format(y=y, m=m, d=d)
    else:
        prompt = rng.choice(EN).format(y=y, mon=MONTHS[m - 1], d=d)
    return prompt, f"{y:04d}-{m:02d}-{d:02d}"


def write_sets(folder: Path, seed_size: int, golden_size: int, pool_size: int,
               rng: random.Random) -> tuple[list[tuple[str, str]], Path, Path]:
    seen: set[str] = set()

    def fresh(n: int) -> list[tuple[str, str]]:
        out = []
        while len(out) < n:
            p, a = make_item(rng)
            if p not in seen:
                seen.add(p)
                out.append((p, a))
        return out
    golden, seed, pool = fresh(golden_size), fresh(seed_size), fresh(pool_size)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("seed", seed), ("golden", golden)):
        (folder / f"{name}.jsonl").write_text("".join(
            json.dumps({"prompt": p, "response": a, "metadata": {"lang": "zh" if "年" in p else "en"}},
                       ensure_ascii=False) + "\n" for p, a in rows), encoding="utf-8")
    return pool, folder / "seed.jsonl", folder / "golden.jsonl"


def start_server(ws_root: Path) -> tuple[str, object]:
    import uvicorn

    from datawheel.api.app import create_app
    from datawheel.settings import Settings
    from datawheel.workspace import Workspace

    port = _free_port()
    app = create_app(Workspace.open(ws_root), Settings(app_key=KEY, admin_key=ADMIN_KEY))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}", server


def read_date(prompt: str) -> str | None:
    """The date a prompt asks about, read as any model that understands it would (None: no date in it)."""
    zh = re.search(r"(\d{4})年(\d{1,2})月(\d{1,2})日", prompt)
    if zh:
        return f"{int(zh[1]):04d}-{int(zh[2]):02d}-{int(zh[3]):02d}"
    names = "|".join(MONTHS)
    en = (re.search(rf"({names}) (\d{{1,2}}),? (\d{{4}})", prompt)
          or re.search(rf"(\d{{1,2}}) ({names}) (\d{{4}})", prompt))
    if not en:
        return None
    month, day = (en[1], en[2]) if en[1] in MONTHS else (en[2], en[1])
    return f"{int(en[3]):04d}-{MONTHS.index(month) + 1:02d}-{int(day):02d}"


def start_upstream(accuracy: float) -> tuple[str, object, dict]:
    """An OpenAI-compatible stand-in for a hosted model: right ``accuracy`` of the time, per prompt (stable)."""
    import hashlib

    import uvicorn
    from fastapi import FastAPI

    app, calls = FastAPI(), {"n": 0}

    @app.post("/v1/chat/completions")
    def complete(body: dict) -> dict:
        calls["n"] += 1
        prompt = body["messages"][-1]["content"]
        truth = read_date(prompt)
        right = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 1000 < accuracy * 1000
        answer = truth if truth and right else "2000-01-01"
        return {"id": f"up-{calls['n']}", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": i, "message": {"role": "assistant", "content": answer},
                             "finish_reason": "stop"} for i in range(body.get("n", 1))],
                "usage": {"prompt_tokens": 0, "completion_tokens": 5, "total_tokens": 5}}

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/v1", server, calls


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return int(port)


def population(rng: random.Random) -> list[tuple[str, str]]:
    users = [(f"honest-{i}", "honest") for i in range(20)] + [(f"careless-{i}", "careless") for i in range(5)]
    users += [(f"adv-{i}", "adversarial") for i in range(4)] + [(f"private-{i}", "no_consent") for i in range(3)]
    rng.shuffle(users)
    return users


def use_product(base: str, users: list[tuple[str, str]], pool: list[tuple[str, str]], n: int,
                rng: random.Random, stats: dict) -> None:
    """``n`` exchanges: a user asks a pool prompt, reads the answer, reacts as their kind does."""
    app = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=base, headers=app, timeout=120) as http:
        for _ in range(n):
            user, kind = rng.choice(users)
            prompt, truth = rng.choice(pool)
            t0 = time.perf_counter()
            r = http.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": prompt}], "user": user, "max_tokens": 16,
                "consent": {"training": kind != "no_consent"}})
            r.raise_for_status()
            stats["latency"].append(time.perf_counter() - t0)
            out = r.json()
            stats["tokens"] += out["usage"]["completion_tokens"]
            answer = out["choices"][0]["message"]["content"].strip()
            feedback: dict = {}
            if kind == "adversarial":
                feedback = {"correction": WRONG, "rating": -1}
            elif kind == "careless" and rng.random() < 0.5:
                y, m, d = rng.randint(1950, 2035), rng.randint(1, 12), rng.randint(1, 28)
                feedback = {"correction": f"{y}-{m:02d}-{d:02d}"}
            elif answer == truth:
                feedback = {"rating": 1}
            else:
                feedback = {"correction": truth, "rating": -1}
            sent = http.post("/v1/feedback", json={"interaction_id": out["id"], "user_id": user, **feedback})
            sent.raise_for_status()


def run_cycle(base: str) -> dict:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=base, headers=admin, timeout=60) as http:
        cycle_id = http.post("/v1/cycles", json={}).json()["cycle_id"]
        while True:
            cycle = http.get(f"/v1/cycles/{cycle_id}").json()
            if cycle["status"] != "running":
                return cycle
            time.sleep(2)


def golden_outputs(ws_root: Path, version: int) -> tuple[float, float]:
    """(exact match, share of golden answers equal to the adversaries' date) of one model version."""
    from datawheel.models.adapters import AdapterRegistry
    from datawheel.stages import evaluate_text
    from datawheel.workspace import Workspace

    ws = Workspace.open(ws_root)
    golden = ws.golden()
    convs = [ws.task.decode(b) for b in golden.inputs]
    scores = evaluate_text.evaluate(AdapterRegistry(ws).load_lm(version), golden, convs, "exact",
                                    max_new_tokens=ws.config.generation.max_new_tokens, batch_size=16)
    adv = sum(a.strip() == WRONG for a in scores.answers) / len(scores.answers)
    ws.store.close()
    return float(scores.scores.mean()), adv


def oracle(ws_root: Path, seed: Path, seen: list[tuple[str, str]]) -> tuple[float, float]:
    """The same recipe fine-tuned on the true targets of the prompts users asked: the ceiling for the wheel."""
    from datawheel.artifacts import LabelledSet
    from datawheel.models.adapters import AdapterRegistry
    from datawheel.stages import evaluate_text
    from datawheel.stages.train_lora import SftExample, train_lora
    from datawheel.tasks.language_model import load_language_model
    from datawheel.workspace import Workspace

    ws = Workspace.open(ws_root)
    base, sha = AdapterRegistry(ws).base()
    rows = [json.loads(x) for x in seed.read_text(encoding="utf-8").splitlines()]
    examples = [SftExample((("user", r["prompt"]),), r["response"]) for r in rows]
    examples += [SftExample((("user", p),), a) for p, a in dict(seen).items()]
    out = Path(tempfile.mkdtemp()) / "oracle"
    t0 = time.perf_counter()
    train_lora(base, sha, examples, ws.config.generation, out)
    seconds = time.perf_counter() - t0
    golden: LabelledSet = ws.golden()
    scores = evaluate_text.evaluate(load_language_model(base, out), golden,
                                    [ws.task.decode(b) for b in golden.inputs], "exact",
                                    max_new_tokens=ws.config.generation.max_new_tokens, batch_size=16)
    ws.store.close()
    return float(scores.scores.mean()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-cycle", type=int, default=300)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--golden", type=int, default=100)
    parser.add_argument("--seed-size", type=int, default=12)
    parser.add_argument("--pool", type=int, default=400, help="distinct prompts users ask")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--base-model", default="")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--proxy", action="store_true", help="proxy mode: an upstream stand-in answers first")
    parser.add_argument("--upstream-accuracy", type=float, default=0.9)
    args = parser.parse_args()

    from datawheel.wheel.init import init_workspace

    rng = random.Random(7)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="llm-flywheel-"))
    shutil.rmtree(work / "ws", ignore_errors=True)
    pool, seed, golden = write_sets(work / "data", args.seed_size, args.golden, args.pool, rng)
    options: dict = {"base_model": args.base_model or None, "max_new_tokens": 16, "epochs": args.epochs,
                     "preference_min_rows": 64}
    upstream = None
    if args.proxy:
        url, upstream, calls = start_upstream(args.upstream_accuracy)
        options["upstream"] = {"url": url, "model": "stand-in"}
    t0 = time.perf_counter()
    ws = init_workspace(work / "ws", task="text-generation", labels=(), seed_data=seed, eval_data=golden,
                        generation_options=options)
    init_seconds = time.perf_counter() - t0
    models = ws.store.list_models()
    rows = [("base zero-shot (v1)", models[0]["metrics"]["score"], "-", "-"),
            (f"seed fine-tune (v2), init {init_seconds:.0f} s", models[1]["metrics"]["score"],
             "-", f"{models[1]['train_info']['seconds']:.0f}")]
    upstream_versions = {m["version"] for m in models if m["model_name"] == "upstream"}
    if upstream_versions:
        v_up = min(upstream_versions)
        rows.append((f"upstream stand-in (v{v_up}, answers right {args.upstream_accuracy:.0%} of prompts)",
                     ws.store.get_model(v_up)["metrics"]["score"], "-", "-"))
        serving = ws.store.aliases()["champion"]
        rows.append((f"serving after init: v{serving}", ws.store.get_model(serving)["metrics"]["score"], "-", "-"))
    ws.store.close()
    base, server = start_server(work / "ws")
    users = population(rng)
    asked = pool[:]
    stats: dict = {"latency": [], "tokens": 0, "gen_seconds": 0.0}
    seen: list[tuple[str, str]] = []
    for c in range(args.cycles):
        t = time.perf_counter()
        sub = random.Random(100 + c)
        use_product(base, users, asked, args.per_cycle, sub, stats)
        stats["gen_seconds"] += time.perf_counter() - t
        seen = asked
        cycle = run_cycle(base)
        report = cycle["report"] or {}
        champion = report.get("champion_version")
        if champion in upstream_versions:  # the upstream still serves: the local candidate's score is the news
            score, adv = (report.get("candidate_metrics") or {}).get("score", float("nan")), float("nan")
            champion = f"{champion} (upstream; local candidate v{report.get('candidate_version')} scored)"
        else:
            score, adv = golden_outputs(work / "ws", champion) if champion else (float("nan"), float("nan"))
        rows.append((f"cycle {c + 1} champion v{champion} ({report.get('decision')}, "
                     f"{report.get('snapshot', {}).get('sft', 0)} SFT / {report.get('snapshot', {}).get('dpo', 0)} "
                     f"DPO rows, {report.get('users_excluded', 0)} users excluded)", score, f"{adv:.1%}",
                     f"{report.get('training_seconds', 0):.0f} (cycle {report.get('seconds', 0):.0f})"))
    server.should_exit = True  # type: ignore[attr-defined]
    if upstream is not None:
        upstream.should_exit = True  # type: ignore[attr-defined]
        print(f"upstream stand-in answered {calls['n']} requests")
    o_score, o_seconds = oracle(work / "ws", seed, seen)
    rows.append(("oracle: same recipe on the true targets of the same prompts", o_score, "-", f"{o_seconds:.0f}"))
    lat = sorted(stats["latency"])
    print("\n| model | golden exact match | adversarial answer share | training s |\n|---|---|---|---|")
    for name, score, adv_share, secs in rows:
        print(f"| {name} | {score:.1%} | {adv_share} | {secs} |")
    print(f"\ngeneration over HTTP: {len(lat)} requests, {stats['tokens'] / stats['gen_seconds']:.1f} completion "
          f"tokens/s (including feedback calls), latency p50 {statistics.median(lat) * 1000:.0f} ms, "
          f"p99 {lat[int(0.99 * (len(lat) - 1))] * 1000:.0f} ms")
    print(f"workspace: {work / 'ws'}")


if __name__ == "__main__":
    main()
