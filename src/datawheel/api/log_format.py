"""How ``datawheel serve`` writes its log: one line per record on stderr, JSON (the default) or plain text.

Every line has ``ts``, ``level`` and ``event``: ``request`` (``api/access_log.py``), one of the wheel's event
types (``api/event_log.py``), ``start``, or ``log`` for any other record (uvicorn's own, with its
``logger`` and ``message``). Records carry their fields as ``extra={"fields": {...}}``, so nothing is
encoded until a handler writes the line. An exception is reported by its type and where it was raised,
never by its message, which may quote a value (an id, an input) the request carried.

``logging_config`` is a ``dictConfig`` given to uvicorn, which applies it in every worker process it
starts, so each worker's lines look alike.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text"]


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
#: the last whole second formatted, and its text: a line per request must not format a date each time
_second: tuple[int, str] = (-1, "")


def _ts(created: float) -> str:
    global _second
    whole, last = int(created), _second  # one read: another thread may replace it meanwhile
    if last[0] != whole:
        last = _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{last[1]}.{int((created - whole) * 1000):03d}+00:00"


def _line(record: logging.LogRecord) -> dict[str, Any]:
    line: dict[str, Any] = {"ts": _ts(record.created), "level": record.levelname.lower()}
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        line["event"] = record.getMessage()
        line.update(fields)
    else:
        line.update(event="log", logger=record.name, message=record.getMessage())
    if record.exc_info and record.exc_info[0] is not None:
        frames = traceback.extract_tb(record.exc_info[2])
        line["error"] = record.exc_info[0].__name__
        if frames:
            line["where"] = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}"  # a path names its owner
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _ENCODER.encode(_line(record))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _line(record)
        head = f"{line.pop('ts')} {line.pop('level'):<7} {line.pop('event')}"
        return " ".join([head, *(f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}"
                                 for k, v in line.items())])


def logging_config(fmt: LogFormat = "json") -> dict[str, Any]:
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}},
        "loggers": {
            "datawheel": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            # uvicorn's access lines would name raw paths (user ids): AccessLog writes them instead
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
        # third-party libraries: warnings and worse only (httpx, for one, logs whole URLs at INFO)
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
