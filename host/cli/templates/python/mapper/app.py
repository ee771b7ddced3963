"""{{name}}: the component's entry point. componentize-py looks for
`Mapping` (the `nexo:connector/mapping` export)."""

from __future__ import annotations

from rename import Plugin
from nexo_sdk import export_mapper

Mapping = export_mapper(Plugin)
