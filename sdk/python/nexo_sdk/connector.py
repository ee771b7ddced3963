"""The `Connector` base class a connector plugin subclasses.

Class attributes declare what `spec` returns; methods receive the config
already parsed and validated against `config_schema`. Export it from the
plugin's `app.py` with `Operations = nexo_sdk.export_connector(MyConnector)`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from . import __version__
from .errors import InvalidConfig, Rejected
from .records import Failed, WriteRecord, WriteResult
from .schema import parse_config
from .spec import Page, SecretRequirement, StreamInfo


class Connector:
    """Override `read` and/or `write_record` (or `write` for whole batches),
    and `check` to prove the config connects."""

    #: JSON Schema of the config (validated before every call).
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: Streams the connector knows.
    streams: ClassVar[list[StreamInfo]] = []
    #: Origins (`scheme://host:port`) the plugin calls, fixed by the vendor.
    http_origins: ClassVar[list[str]] = []
    #: Secrets the plugin sends, each bound to origins.
    secrets: ClassVar[list[SecretRequirement]] = []
    #: Bytes of key-value storage needed (0: none).
    kv_bytes: ClassVar[int] = 0

    def sdk_version(self) -> str:
        return f"nexo-sdk-python/{__version__}"

    def parse_config(self, config: str) -> dict[str, Any]:
        """The config validated against `config_schema` (→ `InvalidConfig`)."""
        return parse_config(config, self.config_schema)

    def check(self, config: dict[str, Any]) -> None:
        """Can this config connect and authenticate? Default: it validates."""

    def discover(self, config: dict[str, Any]) -> list[StreamInfo]:
        """The streams available with this config. Default: `streams`."""
        return list(self.streams)

    def read(self, config: dict[str, Any], stream: str, state: str | None) -> Page:
        """One page of `stream` from `state`."""
        raise InvalidConfig(f"stream {stream!r} cannot be read by this connector")

    def write(self, config: dict[str, Any], stream: str, batch: list[WriteRecord]) -> list[WriteResult]:
        """Apply a batch. Default: `write_record` per record; a `Rejected`
        fails that record alone (a `failed` outcome, dead-lettered by the
        host); any other error ends the call and the host retries the batch."""
        results = []
        for record in batch:
            try:
                outcome = self.write_record(config, stream, record)
            except Rejected as e:
                results.append(WriteResult(record.id, Failed(e)))
                continue
            new_id = getattr(outcome, "id", record.id)
            results.append(WriteResult(new_id, outcome))
        return results

    def write_record(self, config: dict[str, Any], stream: str, record: WriteRecord) -> Any:
        """Apply one record; return `Created`/`Updated`/`Unchanged`/`Deleted`."""
        raise InvalidConfig(f"stream {stream!r} cannot be written by this connector")

    def stream_names(self) -> list[str]:
        return [s.name for s in self.streams]

    def stream(self, name: str) -> StreamInfo:
        """The declared stream `name`, or `InvalidConfig` naming the known ones."""
        for s in self.streams:
            if s.name == name:
                return s
        raise InvalidConfig(f"unknown stream {name!r}; this connector has {', '.join(self.stream_names())}")
