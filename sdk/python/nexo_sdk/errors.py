"""The plugin's failures, one class per case of the WIT `error` variant.

Raising one ends the call with that case (in a mapper's or connector's
per-record step: that record's `failed` outcome). Any other exception is a
bug in the plugin: the SDK reports it as `internal` with its message instead
of letting the component trap.
"""

from __future__ import annotations


class PluginError(Exception):
    """Base of the errors the host understands; `case` is the WIT case name."""

    case: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.args == self.args  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class InvalidConfig(PluginError):
    """The configuration is wrong; a person must fix it. Not retried."""

    case = "invalid-config"


class Auth(PluginError):
    """Credentials are missing, wrong or expired. Not retried."""

    case = "auth"


class AccessDenied(PluginError):
    """The system or the host refused this operation. Not retried."""

    case = "access-denied"


class RateLimited(PluginError):
    """The system asked to slow down; the host retries after `retry_after_ms`."""

    case = "rate-limited"

    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(f"rate limited: retry after {retry_after_ms} ms")
        self.retry_after_ms = max(0, int(retry_after_ms))
        self.args = (self.retry_after_ms,)


class Transient(PluginError):
    """A passing failure (timeout, 5xx); retried with backoff."""

    case = "transient"


class Rejected(PluginError):
    """This record only was refused; it goes to the dead-letter queue."""

    case = "rejected"


class Internal(PluginError):
    """A bug in the plugin or the system; not retried."""

    case = "internal"


def from_exception(exc: BaseException) -> PluginError:
    """The error to report for any exception: itself when it is a
    `PluginError`, else `Internal` naming the exception's type and message."""
    if isinstance(exc, PluginError):
        return exc
    text = str(exc) or "(no message)"
    return Internal(f"the plugin raised {type(exc).__name__}: {text}")
