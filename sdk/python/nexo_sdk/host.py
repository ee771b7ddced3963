"""The host's imports as a small interface, so that the SDK's logic runs
(and is unit-tested) without the generated bindings.

Inside a component, `_bindings.WitHost` implements it over componentize-py's
`wit_world.imports`; tests install a fake with `set_host`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .http import Request, Response


class HttpRefusal(Exception):
    """The host did not answer a request: `kind` is the WIT `http-error` case
    (`origin-not-allowed`, `budget-exhausted`, ...), `detail` its payload."""

    def __init__(self, kind: str, detail: str | int | None = None) -> None:
        super().__init__(f"{kind}: {detail}" if detail is not None else kind)
        self.kind = kind
        self.detail = detail


class KvRefusal(Exception):
    """A key-value call failed: `kind` is the WIT `kv-error` case."""

    def __init__(self, kind: str, detail: str | int | None = None) -> None:
        super().__init__(f"{kind}: {detail}" if detail is not None else kind)
        self.kind = kind
        self.detail = detail


class Host(Protocol):
    """What the SDK needs from the host (the WIT imports)."""

    def log(self, level: str, message: str) -> None: ...

    def send(self, request: "Request") -> "Response":
        """Raises `HttpRefusal` when the host refuses or fails the request."""
        ...

    def secret_is_set(self, name: str) -> bool: ...

    def kv_get(self, key: str) -> bytes | None: ...

    def kv_set(self, key: str, value: bytes) -> None: ...

    def kv_delete(self, key: str) -> None: ...

    def kv_list(self, prefix: str) -> list[str]: ...


@dataclass
class _Unbound:
    """The host before a component is running: every call explains why it
    cannot work (e.g. a unit test that forgot `set_host`)."""

    why: str = (
        "the Nexo host is not available: this code runs outside a component; "
        "in tests, install a fake with nexo_sdk.host.set_host(...)"
    )
    logged: list[tuple[str, str]] = field(default_factory=list)

    def log(self, level: str, message: str) -> None:
        self.logged.append((level, message))

    def send(self, request: "Request") -> "Response":
        raise RuntimeError(self.why)

    def secret_is_set(self, name: str) -> bool:
        raise RuntimeError(self.why)

    def kv_get(self, key: str) -> bytes | None:
        raise RuntimeError(self.why)

    def kv_set(self, key: str, value: bytes) -> None:
        raise RuntimeError(self.why)

    def kv_delete(self, key: str) -> None:
        raise RuntimeError(self.why)

    def kv_list(self, prefix: str) -> list[str]:
        raise RuntimeError(self.why)


_current: Host = _Unbound()


def set_host(host: Host) -> Host:
    """Install `host`; returns the previous one (to restore in a test)."""
    global _current
    previous = _current
    _current = host
    return previous


def current() -> Host:
    """The installed host."""
    return _current
