"""The cleaning of one contact record (see app.py), testable without the
component bindings.

It works on the payload as an object and touches only `first_name`,
`last_name`, the full-name field (`name` by default), `phone` and `email`:
so it cleans canonical `Contact`s and any CRM's flat contact alike, and
every other field passes through unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import names
import phones
from nexo_sdk import Mapper, Record, Rejected
from nexo_sdk.records import Operation, to_json

# Read at build time (componentize-py pre-initialises the module), so the
# component carries the same schema file `nexo plugin pack` signs.
CONFIG_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "config.schema.json").read_text())


def _text(payload: dict[str, Any], field: str, where: str) -> str | None:
    value = payload.get(field)
    if value is None or isinstance(value, str):
        return value
    raise Rejected(f"{where}: {field} must be text, not {json.dumps(value)}")


def _set(payload: dict[str, Any], field: str, value: str | None) -> None:
    """Set a cleaned field; an empty one is left out."""
    if value:
        payload[field] = value
    else:
        payload.pop(field, None)


class ContactCleaner(Mapper):
    config_schema = CONFIG_SCHEMA

    def map_record(self, config: dict[str, Any], record: Record) -> Record:
        if record.operation is Operation.DELETE:
            return record
        where = f"contact {record.id}"
        payload = record.json()
        if not isinstance(payload, dict):
            raise Rejected(f"{where}: the payload is not a JSON object")
        name_field = config["name_field"]
        cleaned = names.clean(
            _text(payload, "first_name", where),
            _text(payload, "last_name", where),
            _text(payload, name_field, where),
        )
        if cleaned is None:
            raise Rejected(f"{where}: no name (first_name, last_name and {name_field} are all empty)")
        _set(payload, "first_name", cleaned[0])
        _set(payload, "last_name", cleaned[1])
        payload.pop(name_field, None)
        phone = (_text(payload, "phone", where) or "").strip()
        if phone:
            try:
                payload["phone"] = phones.to_e164(phone, config["default_country_code"])
            except phones.NotAPhone as e:
                if config["bad_phone"] == "reject":
                    raise Rejected(f"{where}: phone {e}") from None
                payload.pop("phone", None)
        elif "phone" in payload:
            payload.pop("phone")
        email = _text(payload, "email", where)
        if email is not None:
            _set(payload, "email", email.strip())
        return Record(record.stream, record.id, to_json(payload), record.operation, record.cursor)
