"""A workspace: one folder holding the config, the keys, the seed and golden sets, snapshots and models.

::

    WS/
      datawheel.toml      the workspace config (task, labels, model, gate, curation)
      policy.toml         the privacy policy (per PII type, per record source)
      secrets.json        app/admin keys and the pseudonym key, mode 0600
      datawheel.db        the embedded SQLite store (unless the config names another URL)
      data/seed.parquet   the team's labelled bootstrap set
      data/golden.parquet the frozen evaluation set, never trained on
      snapshots/          one immutable Parquet file per curated dataset
      models/             one artifact per model version

A workspace is created by :func:`datawheel.wheel.init.init_workspace`; this
module only opens one and names its parts, so it depends on nothing above the
store, the tasks and the privacy policy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets as pysecrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow.parquet as pq

from datawheel.artifacts import LabelledSet, drop_users, write_parquet
from datawheel.config import WorkspaceConfig, load_config
from datawheel.errors import WorkspaceError
from datawheel.privacy.policy import Policy, load_policy
from datawheel.privacy.screen import Screen
from datawheel.store.store import Store
from datawheel.tasks import get_task
from datawheel.tasks.base import Task

CONFIG_FILE = "datawheel.toml"
SECRETS_FILE = "secrets.json"


@dataclass(frozen=True)
class Secrets:
    app_key: str
    admin_key: str
    pseudonym_key: str
    #: for people labelling the annotation queue (absent from workspaces made before the queue existed)
    annotator_key: str = ""

    @classmethod
    def generate(cls) -> Secrets:
        return cls(pysecrets.token_urlsafe(32), pysecrets.token_urlsafe(32), pysecrets.token_hex(32),
                   pysecrets.token_urlsafe(32))


class Workspace:
    def __init__(self, root: Path, config: WorkspaceConfig, secrets: Secrets) -> None:
        self.root = Path(root)
        self.config = config
        self.secrets = secrets

    @classmethod
    def open(cls, root: Path | str) -> Workspace:
        root = Path(root)
        if not (root / CONFIG_FILE).is_file():
            raise WorkspaceError(f"{root}: not a datawheel workspace (no {CONFIG_FILE}); "
                                 "create one with `datawheel init`")
        try:
            raw = json.loads((root / SECRETS_FILE).read_text())
            secrets = Secrets(**raw)
        except (OSError, ValueError, TypeError):
            raise WorkspaceError(f"{root / SECRETS_FILE}: missing or unreadable; the workspace is incomplete") from None
        return cls(root, load_config(root / CONFIG_FILE), secrets)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.workspace.labels

    @property
    def db_url(self) -> str:
        return self.config.workspace.db_url or f"sqlite:///{(self.root / 'datawheel.db').resolve()}"

    @cached_property
    def task(self) -> Task:
        return get_task(self.config.workspace.task, encoder=self.config.model.encoder, cache_dir=self.root / "cache")

    @cached_property
    def store(self) -> Store:
        return Store.open(self.db_url, self.user_ref)

    @cached_property
    def policy(self) -> Policy:
        return load_policy(self.root)

    def screen(self, on_finding: Callable[[str, str], None] | None = None) -> Screen:
        return Screen(self.policy, self.secrets.pseudonym_key, on_finding=on_finding)

    def record_policy(self, actor: str) -> None:
        """Append the policy to the audit chain when it differs from the last one recorded there."""
        sha = self.policy.sha256()
        last = self.store.last_audit_detail(("policy_set", "policy_change"))
        if last is None or last.get("sha256") != sha:
            self.store.audit(actor, "policy_change" if last else "policy_set",
                             {"sha256": sha, "policy": self.policy.model_dump(mode="json")})

    def seed(self) -> LabelledSet:
        return LabelledSet.read(self.root / "data" / "seed.parquet")

    def golden(self) -> LabelledSet:
        return LabelledSet.read(self.root / "data" / "golden.parquet")

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self.root / "snapshots" / f"{snapshot_id}.parquet"

    def model_path(self, version: int) -> Path:
        return self.root / "models" / f"v{version}.pt"

    def checkpoint_path(self, dataset_id: str | None) -> Path:
        """Where an unfinished training run on a dataset keeps its last epoch (the seed set: ``seed``)."""
        return self.root / "checkpoints" / f"{dataset_id or 'seed'}.pt"

    def erase_user(self, user_id: str, actor: str = "app") -> dict:
        """Erase a user from the store and from what was derived from their inputs outside it.

        An unfinished run's checkpoint was trained on them, so checkpoints go (a cycle then trains from
        the start); cached text embeddings of their inputs go too.
        """
        hashes = self.store.content_hashes_of(user_id)
        receipt = self.store.erase_user(user_id, actor)
        shutil.rmtree(self.root / "checkpoints", ignore_errors=True)
        self.task.drop_cached(hashes)
        self.scrub_snapshots({self.user_ref(user_id)})
        self.store.scrub()
        return receipt

    def scrub_snapshots(self, user_refs: set[str]) -> list[str]:
        """Rewrite every snapshot file that holds rows of these (erased) users without those rows.

        Models already trained on a snapshot are not changed: the erasure receipt names them. Returns the ids
        of the snapshots rewritten. Each file is replaced atomically, so a reader sees the old or the new one.
        """
        rewritten = []
        for snap in self.store.list_snapshots() if user_refs else []:
            path = self.root / snap["path"]
            if not path.is_file():
                continue
            refs = pq.read_table(path, columns=["user_refs"]).column("user_refs").to_pylist()
            if not any(user_refs.intersection(row) for row in refs):
                continue
            kept = drop_users(pq.read_table(path), user_refs)
            self.store.replace_snapshot_file(snap["id"], write_parquet(kept, path), len(kept))
            rewritten.append(snap["id"])
        return rewritten

    def user_ref(self, user_id: str) -> str:
        """A keyed pseudonym of a user id: stable within the workspace, not reversible without its key."""
        return hmac.new(self.secrets.pseudonym_key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]

