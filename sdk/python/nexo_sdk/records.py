"""Records and outcomes as plain Python classes, independent of the
generated bindings (the adapter in `_bindings` converts at the boundary)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from .errors import PluginError


class Operation(Enum):
    """What a record asks the destination to do."""

    UPSERT = "upsert"
    DELETE = "delete"


@dataclass
class Record:
    """One entity from one stream of one system; `payload` is JSON text."""

    stream: str
    id: str
    payload: str
    operation: Operation = Operation.UPSERT
    cursor: str | None = None

    @classmethod
    def of(
        cls,
        stream: str,
        id: str,
        value: Any,
        cursor: str | None = None,
        operation: Operation = Operation.UPSERT,
    ) -> "Record":
        """A record whose payload is `value` serialised as compact JSON."""
        return cls(stream, id, to_json(value), operation, cursor)

    def json(self) -> Any:
        """The payload parsed; a payload that is not JSON is `Rejected`."""
        return parse_payload(self.payload, self.stream, self.id)


@dataclass
class WriteRecord:
    """One record of a `write` batch, with its own idempotency key."""

    stream: str
    id: str
    payload: str
    idempotency_key: str
    operation: Operation = Operation.UPSERT

    def json(self) -> Any:
        """The payload parsed; a payload that is not JSON is `Rejected`."""
        return parse_payload(self.payload, self.stream, self.id or self.idempotency_key)


@dataclass(frozen=True)
class Created:
    """Created; carries the destination id."""

    id: str


@dataclass(frozen=True)
class Updated:
    """Updated; carries the destination id."""

    id: str


@dataclass(frozen=True)
class Unchanged:
    """Already up to date; carries the destination id."""

    id: str


@dataclass(frozen=True)
class Deleted:
    """Deleted (or archived); carries the destination id."""

    id: str


@dataclass(frozen=True)
class Failed:
    """This record only failed (a write or a map outcome)."""

    error: PluginError


WriteOutcome = Union[Created, Updated, Unchanged, Deleted, Failed]


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one record of a write batch."""

    id: str
    outcome: WriteOutcome


@dataclass(frozen=True)
class Mapped:
    """What a mapper made of one input record; no records = skipped."""

    records: list[Record] = field(default_factory=list)


MapOutcome = Union[Mapped, Failed]


def to_json(value: Any) -> str:
    """Compact JSON, as the host and the Rust SDK write it."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_payload(payload: str, stream: str, id: str) -> Any:
    """A record's payload parsed, or `Rejected` naming the record."""
    from .errors import Rejected

    try:
        return json.loads(payload)
    except ValueError as e:
        raise Rejected(f"{stream} record {id or '(new)'}: the payload is not JSON: {e}") from None
