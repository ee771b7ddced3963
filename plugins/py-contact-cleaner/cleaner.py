"""The cleaning of one contact record (see app.py), testable without the
component bindings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import names
import phones
from nexo_sdk import Contact, Mapper, Record, Rejected
from nexo_sdk.records import Operation, to_json

# Read at build time (componentize-py pre-initialises the module), so the
# component carries the same schema file `nexo plugin pack` signs.
CONFIG_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "config.schema.json").read_text())


class ContactCleaner(Mapper):
    config_schema = CONFIG_SCHEMA

    def map_record(self, config: dict[str, Any], record: Record) -> Record:
        if record.operation is Operation.DELETE:
            return record
        where = f"contact {record.id}"
        contact = Contact.from_json(record.json())
        full = contact.extra.get(config["name_field"])
        cleaned = names.clean(contact.first_name, contact.last_name, full if isinstance(full, str) else None)
        if cleaned is None:
            raise Rejected(f"{where}: no name (first_name, last_name and {config['name_field']} are empty)")
        contact.first_name, contact.last_name = (part or None for part in cleaned)
        contact.extra.pop(config["name_field"], None)
        if contact.phone is not None and contact.phone.strip():
            try:
                contact.phone = phones.to_e164(contact.phone, config["default_country_code"])
            except phones.NotAPhone as e:
                if config["bad_phone"] == "reject":
                    raise Rejected(f"{where}: phone {e}") from None
                contact.phone = None
        elif contact.phone is not None:
            contact.phone = None
        if contact.email is not None:
            contact.email = contact.email.strip() or None
        return Record(record.stream, record.id, to_json(contact.to_json()), record.operation, record.cursor)

