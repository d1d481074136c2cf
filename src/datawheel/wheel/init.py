"""Creating a workspace: import the team's seed and golden sets, train model v1, make it champion.

Everything is built in a temporary sibling folder and renamed into place only
when model v1 is champion, so a failed init leaves nothing behind. Both sets are
read and checked (every label in the seed set, enough of each) before anything
is written or trained, so a bad file fails in seconds, not after training.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from datawheel.artifacts import LabelledSet, Progress, atomic_write_bytes, write_parquet
from datawheel.config import WorkspaceConfig, parse_config
from datawheel.errors import WorkspaceError
from datawheel.importers import MIN_EXAMPLES, check_seed, golden_gaps, load_labelled
from datawheel.privacy.policy import POLICY_FILE, Policy
from datawheel.privacy.screen import Screen
from datawheel.stages.train import warm_up
from datawheel.store import tables
from datawheel.store.store import Store
from datawheel.tasks import GENERATION_TASK, get_task
from datawheel.wheel.chat_turn import first_chat_champion
from datawheel.wheel.cycle import first_champion
from datawheel.workspace import CONFIG_FILE, SECRETS_FILE, Secrets, Workspace


def init_workspace(root: Path | str, *, task: str, labels: tuple[str, ...], seed_data: Path, eval_data: Path,
                   db_url: str = "", model_name: str = "", epochs: int | None = None,
                   model_options: dict | None = None, generation_options: dict | None = None,
                   progress: Progress | None = None, min_examples: int | None = None,
                   warn: Callable[[str], None] | None = None) -> Workspace:
    """``model_options``: further ``[model]`` settings written into the new config (e.g. ``augment``);
    ``generation_options``: the ``[generation]`` settings of a text-generation workspace (``base_model``, ...);
    ``min_examples``: seed examples each label needs (text generation: seed rows in all; default
    ``importers.MIN_EXAMPLES``); ``warn`` is told what the import ignored and which labels the golden set cannot
    measure."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise WorkspaceError(f"{root}: already exists and is not empty; choose a new folder")
    config = _config(task, labels, db_url, model_name, epochs, model_options, generation_options)
    secrets = Secrets.generate()
    # The team's own files pass the same screen as users' data: nothing unredacted reaches the workspace.
    screen = Screen(Policy(), secrets.pseudonym_key)
    seed, golden = _import_sets(config, screen, Path(seed_data), Path(eval_data), min_examples or MIN_EXAMPLES, warn)
    config = _with_language(config, seed)
    staging = root.with_name(f".{root.name}.init-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    created_external_tables = False
    store: Store | None = None
    try:
        _write_files(staging, config, screen.policy, secrets, seed, golden)
        ws = Workspace(staging, config, secrets)
        store = ws.store
        if db_url:
            with store.engine.connect() as conn:
                if conn.dialect.has_table(conn, "models"):
                    raise WorkspaceError("the database at --db already holds a datawheel workspace")
            created_external_tables = True
        tables.metadata.create_all(store.engine)
        ws.record_policy(actor="init")
        if task == GENERATION_TASK:
            first_chat_champion(ws, seed, golden, progress)
        else:
            first_champion(ws, seed, golden, progress)
        store.close()
        staging.rename(root)
    except BaseException:
        if store is not None:
            if created_external_tables:
                tables.metadata.drop_all(store.engine)
            store.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Workspace.open(root)


def _config(task: str, labels: tuple[str, ...], db_url: str, model_name: str, epochs: int | None,
            model_options: dict | None, generation_options: dict | None = None) -> WorkspaceConfig:
    raw: dict = {"workspace": {"task": task, "labels": list(labels), "db_url": db_url}}
    if generation_options:
        options = {k: v for k, v in generation_options.items() if v is not None}
        if "upstream" in options:  # proxy mode: its own section
            raw["upstream"] = options.pop("upstream")
        raw["generation"] = options
    model: dict = dict(model_options or {})
    if model_name:
        model["name"] = model_name
    if epochs is not None:
        model["epochs"] = epochs
    if model:
        raw["model"] = model
    config = parse_config(raw, source="init options")
    models = get_task(task).models
    if config.model.name and config.model.name not in models:
        raise WorkspaceError(f"model {config.model.name!r} is not available for {task}; "
                             f"choose one of {', '.join(models)}")
    if not config.model.name:
        # The resolved name is written down: a later release changing the task's default must not switch an
        # existing workspace's model family (a warm start across families is refused).
        raw["model"] = {**raw.get("model", {}), "name": models[0]}
        config = parse_config(raw, source="init options")
    return config


def _with_language(config: WorkspaceConfig, seed: LabelledSet) -> WorkspaceConfig:
    """A text workspace records its language (detected on the seed set unless given) and refuses a model that
    cannot read it, before any training."""
    if config.workspace.task != "text-classification":
        return config
    from datawheel.tasks.text_encoders import detect_language, language_problem

    model = config.model
    language = model.language or detect_language([b.decode("utf-8") for b in seed.inputs])
    problem = language_problem(model.name, model.encoder, language)
    if problem:
        raise WorkspaceError(problem)
    return config.model_copy(update={"model": model.model_copy(update={"language": language})})


def _import_sets(config: WorkspaceConfig, screen: Screen, seed_data: Path, eval_data: Path, min_examples: int,
                 warn: Callable[[str], None] | None) -> tuple[LabelledSet, LabelledSet]:
    task, labels = get_task(config.workspace.task), config.workspace.labels
    # while workers decode the seed images, this process imports what training will need
    seed = load_labelled(seed_data, task, labels, clean=screen.clean_item, meanwhile=warm_up, warn=warn)
    golden = load_labelled(eval_data, task, labels, clean=screen.clean_item, warn=warn)
    # Keep the golden set honest: an item in both sets stays only in the golden set.
    golden_hashes = set(golden.hashes)
    keep = [i for i, h in enumerate(seed.hashes) if h not in golden_hashes]
    if not keep:
        raise WorkspaceError(f"{seed_data}: every seed example is also in the evaluation set")
    seed = LabelledSet([seed.inputs[i] for i in keep], [seed.labels[i] for i in keep], [seed.hashes[i] for i in keep])
    check_seed(seed, task, labels, seed_data, min_examples)  # what trains: after the golden items left it
    if warn is not None:
        for message in golden_gaps(golden, task, labels, eval_data):
            warn(message)
    return seed, golden


def _write_files(staging: Path, config: WorkspaceConfig, policy: Policy, secrets: Secrets, seed: LabelledSet,
                 golden: LabelledSet) -> None:
    staging.mkdir(mode=0o700, parents=True)  # the workspace: its owner's only
    (staging / "data").mkdir(mode=0o700)
    write_parquet(seed.to_arrow(), staging / "data" / "seed.parquet")
    write_parquet(golden.to_arrow(), staging / "data" / "golden.parquet")
    atomic_write_bytes(staging / CONFIG_FILE, config.to_toml().encode("utf-8"))
    atomic_write_bytes(staging / POLICY_FILE, policy.to_toml().encode("utf-8"))
    fd = os.open(staging / SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(secrets.__dict__, fh)
