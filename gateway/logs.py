"""How log lines look: plain text for people (the default), or one JSON object a line for a log shipper.

A JSON line has ``time``, ``level``, ``logger`` and ``message``, and
``call`` on every line logged while one call is handled: :func:`for_call`
marks that code, and what it starts inherits the mark (a context
variable: tasks, ``call_soon`` callbacks, and jobs handed to the SIP
thread).  Worker processes log the same way, with the ``worker`` index
of the engine a line belongs to (:func:`for_engine`, when a worker process
runs several) or of the process.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
from collections.abc import Iterator

FORMATS = ("plain", "json")

_CALL: contextvars.ContextVar[str] = contextvars.ContextVar("call", default="")
_ENGINE: contextvars.ContextVar[int | None] = contextvars.ContextVar("engine", default=None)


@contextlib.contextmanager
def for_call(call_id: str) -> Iterator[None]:
    """Lines logged inside (and by work started inside) belong to ``call_id``."""
    token = _CALL.set(call_id)
    try:
        yield
    finally:
        _CALL.reset(token)


def for_engine(index: int) -> None:
    """From here on, what this task logs (and what it starts) is engine ``index``'s, as its ``worker``."""
    _ENGINE.set(index)


class CallFilter(logging.Filter):
    """Gives each record the ``call`` it belongs to ("" for none), unless the caller named one, and its
    ``worker``: the engine's it is logged for, else this process's (None: not a worker)."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.setdefault("call", _CALL.get())
        engine = _ENGINE.get()
        worker = record.__dict__.setdefault("worker", self._worker if engine is None else engine)
        record.__dict__["worker_prefix"] = "" if worker is None else f"worker{worker} "
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        call = record.__dict__.get("call")
        if call:
            line["call"] = call
        worker = record.__dict__.get("worker")
        if worker is not None:
            line["worker"] = worker
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: int | str, form: str, worker: int | None = None) -> None:
    """The process's one log handler, on stderr, in ``form`` (one of :data:`FORMATS`)."""
    handler = logging.StreamHandler()
    handler.addFilter(CallFilter(worker))
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(worker_prefix)s%(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def current_format() -> str:
    """The form this process logs in, for the worker processes it starts."""
    json_logs = any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)
    return "json" if json_logs else "plain"
