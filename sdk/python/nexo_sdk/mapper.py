"""The `Mapper` base class a mapper plugin subclasses.

Override `map_record` (one input → records, a record, or `None` to skip);
raise `Rejected` (or any `PluginError` but `InvalidConfig`) for a record that
alone cannot be mapped: it becomes that record's `failed` outcome, which the
host quarantines. `InvalidConfig` and unexpected exceptions fail the batch.
Export it with `Mapping = nexo_sdk.export_mapper(MyMapper)`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable

from .errors import InvalidConfig, PluginError
from .records import Failed, MapOutcome, Mapped, Record
from .schema import parse_config


class Mapper:
    #: JSON Schema of the config (validated once per batch).
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def parse_config(self, config: str) -> dict[str, Any]:
        return parse_config(config, self.config_schema)

    def map_record(self, config: dict[str, Any], record: Record) -> Record | Iterable[Record] | None:
        raise NotImplementedError("a Mapper must override map_record or map_batch")

    def map_batch(self, config: dict[str, Any], batch: list[Record]) -> list[MapOutcome]:
        """One outcome per input, in order."""
        outcomes: list[MapOutcome] = []
        for record in batch:
            try:
                result = self.map_record(config, record)
            except InvalidConfig:
                raise
            except PluginError as e:
                outcomes.append(Failed(e))
                continue
            if result is None:
                outcomes.append(Mapped([]))
            elif isinstance(result, Record):
                outcomes.append(Mapped([result]))
            else:
                outcomes.append(Mapped(list(result)))
        return outcomes
