"""hledger connector in Python: canonical invoices into an hledger journal
through hledger-web's JSON API (see README.md)."""

from __future__ import annotations

from books import Hledger
from nexo_sdk import export_connector

#: The export componentize-py looks for (`nexo:connector/operations`).
Operations = export_connector(Hledger)
