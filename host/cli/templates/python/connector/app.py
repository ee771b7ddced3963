"""{{name}}: the component's entry point. componentize-py looks for
`Operations` (the `nexo:connector/operations` export)."""

from __future__ import annotations

from contacts import Plugin
from nexo_sdk import export_connector

Operations = export_connector(Plugin)
