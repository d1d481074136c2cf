"""Language-model versions: the base model itself, or the base plus a LoRA adapter trained in a cycle.

An adapter is a few megabytes; the base model is not copied per version. A
version records the base's sha256, and loading refuses an adapter whose base
has changed (an adapter's weights mean nothing on other base weights). The
adapter folder's files are hashed at registration and checked on every load,
as classifier weights are. Aliases (champion, previous, trials) move through
the same :class:`Registry` methods as for classifiers, so promotion, rollback
and the erasure fence behave identically.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from datawheel.errors import WorkspaceError
from datawheel.models import card as model_card
from datawheel.models.registry import Registry
from datawheel.tasks.language_model import (
    DEFAULT_BASE,
    Generator,
    LanguageModel,
    adapter_sha256,
    base_sha256,
    load_language_model,
    resolve_base,
)
from datawheel.tasks.upstream import Upstream


class AdapterRegistry(Registry):
    """The registry of a text-generation workspace: ``register_base``/``register_adapter`` and ``load_lm``."""

    def base(self) -> tuple[Path, str]:
        """The configured base model's folder and sha256 (converted from GGUF on first use)."""
        folder = resolve_base(self.ws.config.generation.base_model)
        return folder, base_sha256(folder)

    def register_base(self, sha: str, metrics: dict, *, cycle_id: str | None = None) -> int:
        """The base model answering zero-shot, as a version the gate can keep as champion."""
        version = self.store.next_model_version()
        info = {"model_name": "base", "base_model": self.ws.config.generation.base_model or DEFAULT_BASE,
                "base_sha256": sha, "examples": 0}
        # no weights of its own (they are the base's, identified by sha256): the card is its artifact
        card = model_card.write(self.ws.model_path(version), _card(version, info, metrics, None, None))
        self.store.add_model(version=version, model_name="base", path=str(card.relative_to(self.ws.root)),
                             sha256=sha, metrics=metrics, dataset_id=None, parent=None, cycle_id=cycle_id,
                             train_info=info)
        return version

    def upstream(self) -> Upstream | None:
        """The configured upstream server (proxy mode), or None."""
        cfg = self.ws.config.upstream
        return Upstream(cfg) if cfg.url else None

    def register_upstream(self, upstream: Upstream, metrics: dict, *, cycle_id: str | None = None) -> int:
        """The upstream server as a version, so the gate, aliases and lineage treat it like any model."""
        version = self.store.next_model_version()
        info = {"model_name": "upstream", "upstream_url": upstream.cfg.url, "upstream_model": upstream.cfg.model,
                "examples": 0}
        card = model_card.write(self.ws.model_path(version), _card(version, info, metrics, None, None))
        self.store.add_model(version=version, model_name="upstream", path=str(card.relative_to(self.ws.root)),
                             sha256=upstream.identity, metrics=metrics, dataset_id=None, parent=None,
                             cycle_id=cycle_id, train_info=info)
        return version

    def is_upstream(self, version: int) -> bool:
        return bool(self.store.get_model(version)["model_name"] == "upstream")

    def load_generator(self, version: int) -> Generator:
        """What answers for ``version``: the upstream server it names, or a local model."""
        row = self.store.get_model(version)
        if row["model_name"] != "upstream":
            return self.load_lm(version)
        upstream = self.upstream()
        if upstream is None or upstream.identity != row["sha256"]:
            raise WorkspaceError(f"model v{version} is an upstream server that [upstream] no longer names; "
                                 "set url and model back, or promote a local model")
        return upstream

    def register_adapter(self, adapter: Path, info: dict, metrics: dict, *, dataset_id: str | None,
                         parent: int | None, cycle_id: str | None, decision: dict | None = None) -> int:
        """Move a trained adapter folder into ``models/v<N>/`` (built aside, renamed) and record it."""
        version = self.store.next_model_version()
        folder = self.ws.root / "models" / f"v{version}"
        staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(adapter, staging)
        os.chmod(staging, 0o700)
        sha = adapter_sha256(staging)
        shutil.rmtree(folder, ignore_errors=True)  # a crashed registration's leftover under this number
        staging.rename(folder)
        model_card.write(self.ws.model_path(version), _card(version, info, metrics, dataset_id, decision))
        self.store.add_model(version=version, model_name="lora", path=str(folder.relative_to(self.ws.root)),
                             sha256=sha, metrics=metrics, dataset_id=dataset_id, parent=parent, cycle_id=cycle_id,
                             train_info=info)
        return version

    def load_lm(self, version: int) -> LanguageModel:
        row = self.store.get_model(version)
        base, sha = self.base()
        if row["train_info"].get("base_sha256") != sha:
            raise WorkspaceError(f"model v{version} was trained on another base model than the configured one "
                                 "(generation.base_model); set it back, or start a new workspace")
        if row["model_name"] == "base":
            return load_language_model(base)
        folder = self.ws.root / row["path"]
        if not folder.is_dir() or not any(folder.glob("adapter_*")) or adapter_sha256(folder) != row["sha256"]:
            raise WorkspaceError(f"model v{version}: adapter {folder.name} is missing or fails its sha256 check")
        return load_language_model(base, folder)


def _card(version: int, info: dict, metrics: dict, dataset_id: str | None, decision: dict | None) -> str:
    """A Markdown model card (where classifiers' are, ``models/v<N>.card.md``): what the model is, what it was
    trained on, how it scored, why it was (not) kept."""
    lines = [f"# Model v{version} (text-generation, {info.get('model_name')})", "",
             (f"- upstream server: {info['upstream_url']} (model {info.get('upstream_model') or 'default'})"
              if "upstream_url" in info else
              f"- base model: {info.get('base_model', DEFAULT_BASE)} (sha256 {info.get('base_sha256', '')[:16]}…)"),
             f"- training examples: {info.get('examples', 0)}; dataset: {dataset_id or 'seed set only'}",
             f"- trainable parameters: {info.get('trainable_parameters', 0)}; epochs: {info.get('epochs', 0)}",
             f"- golden {metrics.get('metric')}: {metrics.get('score', 0):.4f} "
             f"(95 % CI {metrics.get('score_ci', [0, 0])[0]:.4f}–{metrics.get('score_ci', [0, 0])[1]:.4f}, "
             f"n={metrics.get('n', 0)})"]
    lines += [f"- slice {name}: {s['score']:.4f} (n={s['n']})" for name, s in metrics.get("slices", {}).items()]
    if decision:
        lines += ["", f"Gate: {decision.get('decision')}", *[f"- {r}" for r in decision.get("decision_reasons", [])]]
    lines += ["", "Known limits: a small model fine-tuned on a CPU; answers are only as good as the corrections "
              "it learnt from, and it is judged only on the golden set's prompts."]
    return "\n".join(lines) + "\n"
