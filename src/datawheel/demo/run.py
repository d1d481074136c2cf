"""The demo: the wheel turning on scikit-learn's bundled handwritten digits, no network needed.

It makes a workspace (seed 10 %, golden 20 %, the rest is what users bring),
serves it over real HTTP, lets a simulated population use and correct the
model, and runs cycles. Each cycle's table row comes from the cycle report the
API returns, so the demo shows exactly what an operator would see.

The workspace is kept (in ``workspaces/demo`` by default) so the operator's
commands can be tried on it afterwards; a second run replaces the first one's
folders, and ``discard`` runs it in a temporary folder deleted at the end.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits
from starlette.types import ASGIApp

from datawheel.api.app import create_app
from datawheel.cli.tables import cycle_table
from datawheel.client import Client
from datawheel.demo.report import write_report
from datawheel.demo.simulate import Simulation
from datawheel.errors import WorkspaceError
from datawheel.settings import load_settings
from datawheel.tasks.image import to_png_base64
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

LABELS = tuple(str(d) for d in range(10))
#: where the demo keeps its workspace unless told otherwise (ignored by git)
DEFAULT_WORKDIR = Path("workspaces") / "demo"
#: the file that marks a folder as the demo's own, so a second run may replace what the first one made there
MARKER = ".datawheel-demo"
#: what a demo run makes inside its folder
MADE = ("import", "workspace")


@dataclass(frozen=True)
class DigitSplits:
    seed: list[tuple[np.ndarray, str]]
    golden: list[tuple[np.ndarray, str]]
    pool: list[tuple[np.ndarray, str]]


def digit_splits(seed_share: float = 0.10, golden_share: float = 0.20, rng_seed: int = 0) -> DigitSplits:
    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # [1797, 8, 8], light ink on dark
    order = np.random.default_rng(rng_seed).permutation(len(images))
    n_golden, n_seed = int(len(order) * golden_share), int(len(order) * seed_share)
    pairs = [(images[i], str(digits.target[i])) for i in order]
    return DigitSplits(pairs[n_golden:n_golden + n_seed], pairs[:n_golden], pairs[n_golden + n_seed:])


def write_image_folder(root: Path, pairs: list[tuple[np.ndarray, str]]) -> Path:
    for n, (pixels, label) in enumerate(pairs):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / label / f"{n:05d}.png")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundServer:
    """uvicorn in a thread: real HTTP on loopback, stopped cleanly at the end."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _pool_inputs(pool: list[tuple[np.ndarray, str]], rng: np.random.Generator) -> list[tuple[dict, str]]:
    """Users send PNGs, some drawn dark-on-light, some as raw pixel arrays: the task must cope with all."""
    out = []
    for pixels, label in pool:
        r = rng.random()
        if r < 0.6:
            out.append(({"image": to_png_base64(pixels)}, label))
        elif r < 0.8:
            out.append(({"image": to_png_base64(255 - pixels)}, label))
        else:
            out.append(({"pixels": pixels.tolist()}, label))
    return out


def run_demo(workdir: Path | None = None, cycles: int = 5, interactions_per_cycle: int = 300, users: int = 40,
             epochs: int = 30, console: Console | None = None, seed: int = 0, discard: bool = False) -> list[dict]:
    """Turn the wheel; the workspace stays in ``workdir`` (default ``workspaces/demo``) unless ``discard``."""
    console = console or Console()
    if discard:
        with tempfile.TemporaryDirectory(prefix="datawheel-demo-") as tmp:
            return _run(Path(tmp), cycles, interactions_per_cycle, users, epochs, console, seed)
    base = prepare_workdir(Path(workdir) if workdir is not None else DEFAULT_WORKDIR, console)
    rows = _run(base, cycles, interactions_per_cycle, users, epochs, console, seed)
    ws = base / "workspace"
    for line in (f"\nthe demo workspace is kept in {ws} (its API keys: {ws / 'secrets.json'}); try:",
                 f"  datawheel models {ws}    # the versions and what the gate decided",
                 f"  datawheel serve {ws}     # the API, the console at http://127.0.0.1:8000/admin",
                 f"  datawheel cycle {ws}     # one more turn: skipped, nobody has sent anything new",
                 "a new `datawheel demo` replaces it; `datawheel demo --discard` keeps nothing"):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return rows


def prepare_workdir(base: Path, console: Console) -> Path:
    """The demo's folder, emptied of a previous demo's run (which the marker file vouches for); a folder holding
    an ``import`` or ``workspace`` the demo did not make is refused rather than overwritten."""
    mine = (base / MARKER).is_file()
    found = [name for name in MADE if (base / name).exists()]
    if found and not mine:
        raise WorkspaceError(f"{base}: already holds {' and '.join(found)} not made by the demo; choose another "
                             "--workdir")
    if found:
        console.print(f"replacing the previous demo in {base}", markup=False, highlight=False)
        for name in found:
            shutil.rmtree(base / name)
    base.mkdir(parents=True, exist_ok=True)
    (base / MARKER).write_text("made by `datawheel demo`; a new run replaces import/ and workspace/ here\n")
    return base


def _run(base: Path, cycles: int, per_cycle: int, users: int, epochs: int, console: Console, seed: int) -> list[dict]:
    started = time.perf_counter()
    splits = digit_splits(rng_seed=seed)
    console.print(f"[bold]datawheel demo[/] — digits: seed {len(splits.seed)}, golden {len(splits.golden)}, "
                  f"user pool {len(splits.pool)}")
    seed_dir = write_image_folder(base / "import" / "seed", splits.seed)
    golden_dir = write_image_folder(base / "import" / "golden", splits.golden)
    # scikit-learn's digits are 8x8 scans blown up to 28x28: rotating and rescaling such blocky images makes
    # them unlike the golden set (measured: the wheel ends ~1.5 points lower), unlike real drawings and photos.
    ws = init_workspace(base / "workspace", task="image-classification", labels=LABELS, seed_data=seed_dir,
                        eval_data=golden_dir, epochs=epochs, model_options={"augment": False})
    v1 = ws.store.get_model(1)["metrics"]["accuracy"]
    console.print(f"workspace {ws.root}: model v1 trained on the seed set, golden accuracy {v1:.1%}")
    app = create_app(ws, load_settings())
    port = _free_port()
    rows: list[dict] = []
    with BackgroundServer(app, port), Client(f"http://127.0.0.1:{port}", ws.secrets.app_key) as product, \
            Client(f"http://127.0.0.1:{port}", ws.secrets.admin_key) as operator:
        sim = Simulation(product, _pool_inputs(splits.pool, np.random.default_rng(seed + 1)), LABELS,
                         n_users=users, seed=seed)
        console.print(f"{len(sim.users)} simulated users: " + ", ".join(
            f"{p.name} {sum(u.profile is p for u in sim.users)}" for p in sim.profiles))
        for n in range(1, cycles + 1):
            sim.run(per_cycle)
            if n == 2:
                victim = next(u for u in sim.users if u.profile.name == "honest")
                receipt = product.erase(victim.user_id)
                console.print(f"erasure of {victim.user_id}: {receipt.records_deleted} records deleted; "
                              f"model versions that had used them: {receipt.model_versions_trained_on_user_data}; "
                              f"next: {receipt.next_step or 'nothing'}")
            state = operator.wait_cycle(operator.start_cycle())
            if state.status != "done" or state.report is None:
                raise RuntimeError(f"cycle {n} failed: {state.error}")
            rows.append(state.report)
            console.print(cycle_table(f"cycle {n}", state.report))
    accuracy = [(0, v1)] + [(i + 1, r["champion_accuracy"]) for i, r in enumerate(rows)]
    _check_consent(ws, sim)
    report_path = Path.cwd() / "report.html"
    write_report(report_path, "datawheel demo — the wheel on handwritten digits",
                 ["cycle", "records in", "accepted", "rejected", "snapshot", "users excluded", "candidate acc.",
                  "decision", "champion", "champion acc."],
                 [[str(i + 1), str(r["records_in"]), str(r["accepted"]), _reasons(r), str(r["snapshot"]["items"]),
                   str(r["snapshot"]["users_excluded"]), _candidate(r), r["decision"],
                   f"v{r['champion_version']}", f"{r['champion_accuracy']:.1%}"] for i, r in enumerate(rows)],
                 accuracy, [f"model v1 (seed only): {v1:.1%}", f"finished in {time.perf_counter() - started:.0f} s"])
    console.print(_summary(v1, rows))
    console.print(f"report written to {report_path} ({time.perf_counter() - started:.0f} s)")
    return rows


def _candidate(report: dict) -> str:
    """A skipped turn trained no candidate."""
    return f"{report['candidate_metrics']['accuracy']:.1%}" if "candidate_metrics" in report else "-"


def _reasons(report: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in report["rejected_by_reason"].items()) or "none"


def _summary(v1: float, rows: list[dict]) -> Table:
    table = Table(title="the wheel, cycle by cycle")
    for col in ("cycle", "records", "accepted", "rejected", "snapshot", "decision", "champion acc."):
        table.add_column(col, justify="right")
    table.add_row("0", "", "", "", "seed", "init", f"{v1:.1%}")
    for i, r in enumerate(rows):
        table.add_row(str(i + 1), str(r["records_in"]), str(r["accepted"]), str(r["rejected"]),
                      str(r["snapshot"]["items"]), r["decision"], f"{r['champion_accuracy']:.1%}")
    return table


def _check_consent(ws: Workspace, sim: Simulation) -> None:
    """The demo's promise, checked on its own store: no non-consenting user's record is in any snapshot."""
    refused = {u.user_id for u in sim.users if not u.profile.consent}
    leaked = [s for s in refused if ws.store.snapshots_of_user(s)]
    if leaked:
        raise RuntimeError(f"{len(leaked)} non-consenting users' records entered a snapshot")
