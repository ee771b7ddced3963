"""{{name}}: a Nexo mapper. It copies each record and renames one field
(`name` → `full_name` unless the config says otherwise); a record whose
payload is not a JSON object is refused alone, the batch goes on."""

from __future__ import annotations

from typing import Any

from nexo_sdk import Mapper, Operation, Record, Rejected


class Plugin(Mapper):
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "from": {"type": "string", "default": "name", "description": "The field to rename"},
            "to": {"type": "string", "default": "full_name", "description": "Its new name"},
        },
    }

    def map_record(self, config: dict[str, Any], record: Record) -> Record | None:
        if record.operation is Operation.DELETE:
            return record
        payload = record.json()
        if not isinstance(payload, dict):
            raise Rejected(f"record {record.id}: the payload is not a JSON object")
        source, target = config.get("from", "name"), config.get("to", "full_name")
        if source in payload:
            payload[target] = payload.pop(source)
        return Record.of(record.stream, record.id, payload, record.cursor)
