"""Train a LoRA adapter on (conversation, target answer) pairs: supervised fine-tuning on a CPU.

Only the answer's tokens are learnt (the prompt's are masked out of the loss),
so the model learns what to say, not to echo questions. LoRA trains ~1 % of the
weights on every linear projection, which is what makes a 135M-parameter model
trainable on two cores. Each epoch ends with a checkpoint (adapter weights,
optimizer, RNG) written atomically; a run on the same data and recipe resumes
from it, and it is deleted when training finishes.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datawheel.artifacts import Progress, atomic_write_bytes
from datawheel.config import GenerationSection
from datawheel.precision import train_in_bf16
from datawheel.tasks.chat import Conversation
from datawheel.tasks.language_model import LanguageModel, load_language_model

IGNORE = -100


@dataclass(frozen=True)
class SftExample:
    conversation: Conversation
    target: str


@dataclass(frozen=True)
class TrainedAdapter:
    #: adapter_config.json + adapter_model.safetensors, loadable by peft
    folder: Path
    info: dict


def _tokenize(lm: LanguageModel, examples: Sequence[SftExample], max_tokens: int) -> list[tuple[list[int], list[int]]]:
    """Input ids and labels per example; a long prompt loses its oldest tokens, never the answer's."""
    rows = []
    for ex in examples:
        prompt, answer = lm.prompt_ids(ex.conversation), lm.answer_ids(ex.target)
        prompt = prompt[max(0, len(prompt) + len(answer) - max_tokens):]
        rows.append((prompt + answer, [IGNORE] * len(prompt) + answer))
    return rows


def _batches(rows: list[tuple[list[int], list[int]]], size: int, rng: random.Random,
             pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Batches of similar length (less padding), in a seeded random order."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]), rng.random()))
    groups = [order[i:i + size] for i in range(0, len(order), size)]
    rng.shuffle(groups)
    out = []
    for group in groups:
        width = max(len(rows[i][0]) for i in group)
        ids = torch.full((len(group), width), pad_id)
        labels = torch.full((len(group), width), IGNORE)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for j, i in enumerate(group):
            x, y = rows[i]
            ids[j, :len(x)], labels[j, :len(y)], mask[j, :len(x)] = torch.tensor(x), torch.tensor(y), 1
        out.append({"input_ids": ids, "labels": labels, "attention_mask": mask})
    return out


def run_key(base_sha: str, examples: Sequence[SftExample], cfg: GenerationSection) -> str:
    """Same base, data and recipe: the same key, so a checkpoint is resumed only by the run that wrote it."""
    h = hashlib.sha256(base_sha.encode())
    for ex in examples:
        h.update(json.dumps([ex.conversation, ex.target], ensure_ascii=False).encode())
    h.update(cfg.model_dump_json().encode())
    return h.hexdigest()[:32]


def train_lora(base: Path, base_sha: str, examples: Sequence[SftExample], cfg: GenerationSection, out: Path,
               *, checkpoint: Path | None = None, progress: Progress | None = None) -> TrainedAdapter:
    """Fine-tune a fresh LoRA adapter on ``examples`` and save it to ``out``."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    if not examples:
        raise ValueError("no training examples")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    lm = load_language_model(base)
    model = get_peft_model(lm.model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                lora_dropout=cfg.lora_dropout, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    rows = _tokenize(lm, examples, cfg.max_prompt_tokens + cfg.max_new_tokens)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    steps = cfg.epochs * -(-len(rows) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
    key, start, history = run_key(base_sha, examples, cfg), 0, []
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state.get("key") == key:
            set_peft_model_state_dict(model, state["adapter"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            start, history = state["epoch"], state["history"]
    t0, tokens, bf16 = time.perf_counter(), 0, train_in_bf16(cfg.train_precision)
    for epoch in range(start, cfg.epochs):
        stats = _epoch(model, _batches(rows, cfg.batch_size, random.Random(cfg.seed * 1000 + epoch),
                                       lm.tokenizer.pad_token_id), optimizer, schedule, bf16)
        tokens += stats.pop("tokens")
        history.append(stats)
        if checkpoint is not None:
            buf = io.BytesIO()
            torch.save({"key": key, "epoch": epoch + 1, "history": history, "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "adapter": get_peft_model_state_dict(model)}, buf)
            atomic_write_bytes(checkpoint, buf.getvalue())
        if progress is not None:
            progress(epoch + 1, cfg.epochs, stats)
    seconds = time.perf_counter() - t0
    model.save_pretrained(str(out))
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    trainable = sum(p.numel() for p in params)
    return TrainedAdapter(out, {"model_name": "lora", "examples": len(rows), "epochs": cfg.epochs,
                                "history": history, "trainable_parameters": trainable, "base_sha256": base_sha,
                                "seconds": round(seconds, 2), "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
                                "resumed_from_epoch": start, "precision": "bfloat16" if bf16 else "float32"})


def _epoch(model: Any, batches: list[dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
           schedule: Any, bf16: bool) -> dict:
    model.train()
    total, count, tokens = 0.0, 0, 0
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # the weights stay float32
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        n = int((batch["labels"] != IGNORE).sum())
        total, count, tokens = total + float(loss.detach()) * n, count + n, tokens + int(batch["attention_mask"].sum())
    model.eval()
    return {"loss": round(total / max(count, 1), 4), "tokens": tokens}
