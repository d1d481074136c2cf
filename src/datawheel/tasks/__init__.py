"""Tasks: one module per kind of input, all behind :class:`datawheel.tasks.base.Task`."""

from __future__ import annotations

from datawheel.errors import ConfigError
from datawheel.tasks.base import Task

TASK_NAMES = ("image-classification", "text-classification")


def get_task(name: str) -> Task:
    # Imported lazily: a text workspace never pays for image decoding and vice versa.
    if name == "image-classification":
        from datawheel.tasks.image import ImageClassification

        return ImageClassification()
    if name == "text-classification":
        from datawheel.tasks.text import TextClassification

        return TextClassification()
    raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
