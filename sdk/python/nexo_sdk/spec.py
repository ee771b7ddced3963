"""What a connector declares: streams, capabilities, pages."""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import Record


@dataclass(frozen=True)
class SecretRequirement:
    """A secret the connector sends (as `{{secret:NAME}}`) and where to."""

    name: str
    description: str
    origins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StreamInfo:
    """A stream: its payload's JSON Schema (text), key, cursor and direction."""

    name: str
    json_schema: str = '{"type":"object"}'
    primary_key: list[str] = field(default_factory=lambda: ["id"])
    cursor_field: str | None = None
    can_read: bool = True
    can_write: bool = False


@dataclass
class Page:
    """One page of a read; `state` is committed by the host with the page."""

    records: list[Record]
    state: str | None = None
    has_more: bool = False
