"""Preference training after SFT: DPO on (chosen, rejected) pairs or KTO on single thumbs, with TRL.

SFT teaches the answers users wrote; preferences teach which of two answers
users liked better, including where nobody wrote the right one. It continues
the SFT adapter (TRL takes the adapter-free base as its frozen reference) and
runs only when the snapshot holds enough rows (``preference_min_rows``): a few
pairs mostly teach noise. TRL's own loop does the work; datawheel gives it the
rows in TRL's conversational format, the same rows ``datasets --export --format
trl`` writes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from datawheel.config import GenerationSection
from datawheel.precision import train_in_bf16
from datawheel.tasks.chat import Conversation, as_messages


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def dpo_rows(pairs: list[tuple[Conversation, str, str]]) -> list[dict[str, Any]]:
    return [{"prompt": as_messages(c), "chosen": _assistant(good), "rejected": _assistant(bad)}
            for c, good, bad in pairs]


def kto_rows(thumbs: list[tuple[Conversation, str, bool]]) -> list[dict[str, Any]]:
    return [{"prompt": as_messages(c), "completion": _assistant(answer), "label": up} for c, answer, up in thumbs]


def train_preferences(base: Path, adapter: Path, rows: list[dict[str, Any]], kind: str, cfg: GenerationSection,
                      out: Path) -> dict:
    """Continue ``adapter`` with DPO (``kind="dpo"``) or KTO on ``rows``; save the result to ``out``."""
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter,
                                      is_trainable=True)
    common: dict[str, Any] = {"num_train_epochs": cfg.preference_epochs, "per_device_train_batch_size": cfg.batch_size,
              "learning_rate": cfg.preference_lr, "beta": cfg.preference_beta, "report_to": [],
              "save_strategy": "no", "use_cpu": True, "disable_tqdm": True, "logging_steps": 10 ** 6,
              "seed": cfg.seed, "max_length": cfg.max_prompt_tokens + cfg.max_new_tokens,
              "bf16": train_in_bf16(cfg.train_precision),
              # TRL checkpoints activations by default (a GPU's memory); on a CPU with room, recomputing them
              # would cost a third more time for nothing
              "gradient_checkpointing": False}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="datawheel-trl-") as scratch:
        if kind == "dpo":
            trainer: Any = DPOTrainer(model=model, args=DPOConfig(output_dir=scratch, **common),
                                      train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        else:
            trainer = KTOTrainer(model=model, args=KTOConfig(output_dir=scratch, **common),
                                 train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        result = trainer.train()
    model.save_pretrained(str(out))
    return {"preference": kind, "preference_rows": len(rows), "preference_loss": round(result.training_loss, 4),
            "preference_seconds": round(time.perf_counter() - t0, 2)}
