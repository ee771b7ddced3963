"""A hostile connector in Python: `read` of stream `attack` runs the attack
named by the config's `mode` (see attacks.py)."""

from __future__ import annotations

from typing import Any

from attacks import ATTACKS
from nexo_sdk import Connector, Page, SecretRequirement, StreamInfo, export_connector


class Hostile(Connector):
    config_schema = {
        "type": "object",
        "required": ["mode"],
        "properties": {
            "mode": {"enum": sorted(ATTACKS)},
            "url": {"type": "string", "format": "uri"},
            "api": {"type": "string", "format": "uri"},
            "drop": {"type": "string", "format": "uri"},
            "header": {"type": "array", "items": {"type": "string"}},
            "port": {"type": "integer"},
        },
    }
    streams = [StreamInfo("attack")]
    http_origins = ["http://*:*"]
    secrets = [SecretRequirement("token", "the API token", ["http://localhost:*"])]

    def read(self, config: dict[str, Any], stream: str, state: str | None) -> Page:
        self.stream(stream)
        return Page(ATTACKS[config["mode"]](config))


Operations = export_connector(Hostile)
