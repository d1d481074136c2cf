"""Tasks: one module per kind of input, all behind :class:`datawheel.tasks.base.Task`."""

from __future__ import annotations

from pathlib import Path

from datawheel.errors import ConfigError
from datawheel.tasks.base import Task

#: the classification tasks (every one runs through tests/test_contract.py's model checks)
TASK_NAMES = ("image-classification", "text-classification")
#: text-generation shares the item contract, but its models are language models (tasks/language_model.py)
GENERATION_TASK = "text-generation"


def get_task(name: str, *, encoder: str = "", cache_dir: Path | None = None) -> Task:
    """``encoder`` and ``cache_dir`` configure the MiniLM text models and where their embeddings are kept."""
    # Imported lazily: a text workspace never pays for image decoding and vice versa.
    if name == "image-classification":
        from datawheel.tasks.image import ImageClassification

        return ImageClassification()
    if name == "text-classification":
        from datawheel.tasks.text import TextClassification

        return TextClassification(encoder=encoder, cache_dir=cache_dir)
    if name == GENERATION_TASK:
        from datawheel.tasks.chat import TextGeneration

        return TextGeneration()
    raise ConfigError(f"unknown task {name!r}; choose one of {', '.join((*TASK_NAMES, GENERATION_TASK))}")
