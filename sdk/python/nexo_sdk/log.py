"""Logging into the host's plugin log, and Python's `logging` routed there.

`print` and tracebacks go to stdout/stderr, which the host also captures
into the plugin log; use these functions (or `logging`) for levels.
"""

from __future__ import annotations

import logging

from . import host as _host

LEVELS = ("trace", "debug", "info", "warn", "error")


def log(level: str, message: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    _host.current().log(level, message)


def trace(message: str) -> None:
    log("trace", message)


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warn(message: str) -> None:
    log("warn", message)


def error(message: str) -> None:
    log("error", message)


def level_of(record_level: int) -> str:
    """The host level for a `logging` level number."""
    if record_level >= logging.ERROR:
        return "error"
    if record_level >= logging.WARNING:
        return "warn"
    if record_level >= logging.INFO:
        return "info"
    if record_level >= logging.DEBUG:
        return "debug"
    return "trace"


class HostLogHandler(logging.Handler):
    """A `logging` handler that writes to the host's plugin log."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log(level_of(record.levelno), self.format(record))
        except Exception:  # a log line must never fail the call
            self.handleError(record)


def route_logging(level: int = logging.INFO) -> None:
    """Send the root logger to the host (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(h, HostLogHandler) for h in root.handlers):
        handler = HostLogHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
