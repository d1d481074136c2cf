"""What a record's id costs the group commit: random ids (UUID version 4) against time-ordered ones (``new_id``).

    python benchmarks/record_ids.py [--batches 300] [--prefill 20000] [--users 16]

Each run makes a fresh SQLite store with datawheel's schema and connection settings (WAL, ``synchronous=FULL``),
fills it with ``--prefill`` records, then commits ``--batches`` transactions of 1, 8 and 32 records each, the
way the group-commit writer does (``BEGIN IMMEDIATE``, one multi-row INSERT through ``insert_rows``, commit).
The two id kinds alternate batch size by batch size in the same process. Automatic checkpoints are off while
measuring, so the log's growth is what the commits wrote. Prints a Markdown table: CPU and wall time per
commit, log bytes per commit, and each time-ordered row's ratio to the random row above it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from datawheel.store import tables as t
from datawheel.store.db import make_engine, new_id, utcnow
from datawheel.store.raw_sqlite import insert_rows


def _record(make_id: Callable[[], str], users: int) -> dict:
    item = os.urandom(784)  # a 28x28 image's stored bytes
    return {"id": make_id(), "user_id": f"user-{random.randrange(users)}", "kind": "interaction",
            "content_hash": hashlib.sha256(item).hexdigest(), "input": item, "label": None, "predicted_label": "3",
            "model_name": "datawheel", "model_version": "1", "consent_training": False, "meta": {},
            "created_at": utcnow()}


def run(kind: str, batch: int, args: argparse.Namespace, root: Path) -> dict:
    make_id = new_id if kind == "time-ordered" else (lambda: uuid.uuid4().hex)
    path = root / f"{kind}-{batch}.db"
    engine = make_engine(f"sqlite:///{path}")
    t.metadata.create_all(engine)
    with engine.begin() as conn:
        for start in range(0, args.prefill, 1000):
            insert_rows(conn, t.records, [_record(make_id, args.users) for _ in range(min(1000, args.prefill - start))],
                        False)
    batches = [[_record(make_id, args.users) for _ in range(batch)] for _ in range(args.batches)]
    with engine.connect() as conn:
        raw = conn.connection.driver_connection  # outside any transaction: a checkpoint cannot run inside one
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        raw.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
        conn = conn.execution_options(write=True)
        cpu, wall = time.process_time(), time.perf_counter()
        for rows in batches:
            with conn.begin():
                insert_rows(conn, t.records, rows, False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    log = Path(f"{path}-wal").stat().st_size
    engine.dispose()
    return {"cpu_ms": 1e3 * cpu / args.batches, "wall_ms": 1e3 * wall / args.batches,
            "log_kb": log / 1024 / args.batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--prefill", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=16, help="distinct user ids (the serving benchmark's 16)")
    args = parser.parse_args()
    rows = ["| ids | records per commit | CPU ms/commit | wall ms/commit | log KB/commit | CPU, log vs random |",
            "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (1, 8, 32):
            random_ids = run("random", batch, args, Path(tmp))
            ordered = run("time-ordered", batch, args, Path(tmp))
            for kind, r in (("random (uuid4)", random_ids), ("time-ordered (new_id)", ordered)):
                ratio = "" if r is random_ids else (f"{r['cpu_ms'] / random_ids['cpu_ms']:.2f}x, "
                                                    f"{r['log_kb'] / random_ids['log_kb']:.2f}x")
                rows.append(f"| {kind} | {batch} | {r['cpu_ms']:.3f} | {r['wall_ms']:.3f} | {r['log_kb']:.0f} | "
                            f"{ratio} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
