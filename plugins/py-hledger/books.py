"""The hledger connector: stream `invoices`, writable (canonical invoices
become balanced transactions, idempotent by the write's key) and readable
(the latest version of each invoice Nexo wrote, incrementally)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ledger
from hledger_api import Api, Doc, history
from nexo_sdk import (
    Connector,
    Created,
    Cursor,
    Deleted,
    Invoice,
    Operation,
    Page,
    Record,
    StreamInfo,
    Unchanged,
    Updated,
    WriteRecord,
    WriteResult,
    log,
)
from nexo_sdk.errors import Rejected
from nexo_sdk.records import Failed

# Read at build time (componentize-py pre-initialises the module); `spec`
# hands it to the host, which signs it into the bundle at `pack`.
CONFIG_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "config.schema.json").read_text())

INVOICES = StreamInfo(
    "invoices",
    json_schema='{"type":"object","required":["customer","issue_date","currency","status","subtotal","total_tax","total"]}',
    primary_key=["id"],
    cursor_field="tindex",
    can_read=True,
    can_write=True,
)


class Hledger(Connector):
    config_schema = CONFIG_SCHEMA
    streams = [INVOICES]
    # hledger-web is self-hosted: the admin names the origin on each
    # connection; these any-host patterns are what the manifest's
    # `connection_origins = true` stands for.
    http_origins = ["https://*:*", "http://*:*"]

    def check(self, config: dict[str, Any]) -> None:
        version = Api(config).version()
        log.info(f"hledger-web {version} answers at {config['base_url']}")

    def read(self, config: dict[str, Any], stream: str, state: str | None) -> Page:
        self.stream(stream)
        cursor = Cursor.from_state(state)
        docs = sorted(history(Api(config).transactions()).values(), key=lambda d: d.tindex)
        records = []
        for doc in docs:
            position = f"{doc.tindex:012d}"
            if cursor.is_seen(position, doc.key):
                continue
            cursor.observe(position, doc.key)
            if doc.reversed:
                records.append(Record(stream, doc.key, "{}", Operation.DELETE, position))
            elif doc.payload is not None:
                records.append(Record.of(stream, doc.key, dict(doc.payload, id=doc.key), position))
        return Page(records, cursor.to_state(), has_more=False)

    def write(self, config: dict[str, Any], stream: str, batch: list[WriteRecord]) -> list[WriteResult]:
        self.stream(stream)
        api = Api(config)
        docs = history(api.transactions())
        results = []
        for record in batch:
            key = record.id or record.idempotency_key
            try:
                outcome = self._write_one(api, config, docs, key, record)
            except Rejected as e:
                results.append(WriteResult(record.id, Failed(e)))
                continue
            results.append(WriteResult(key, outcome))
        return results

    def _write_one(self, api: Api, config: dict[str, Any], docs: dict[str, Doc], key: str, record: WriteRecord) -> Any:
        doc = docs.get(key)
        posted = doc is not None and not doc.reversed
        if record.operation is Operation.DELETE:
            if posted:
                self._reverse(api, docs, doc)  # type: ignore[arg-type]
            return Deleted(key)
        invoice = Invoice.from_json(record.json())
        invoice.validate()
        if invoice.status not in ledger.POSTING_STATUSES:
            # Draft, submitted and voided invoices owe nothing: no posting.
            if posted:
                self._reverse(api, docs, doc)  # type: ignore[arg-type]
                return Updated(key)
            return Unchanged(key) if doc is not None else Created(key)
        payload = invoice.to_json()
        payload.pop("id", None)
        entry = ledger.invoice_entry(invoice, config["accounts"], config["account_codes"])
        if posted and doc is not None and doc.payload == payload:
            return Unchanged(key)
        if posted and doc is not None:
            self._reverse(api, docs, doc)
        revision = (doc.revision + 1) if doc is not None else 1
        tagged = ledger.tagged(entry, key, str(revision), payload)
        api.add(tagged, ledger.code(key, str(revision)))
        docs[key] = Doc(key, revision, False, tagged, payload, doc.tindex if doc else 0)
        return Updated(key) if doc is not None else Created(key)

    def _reverse(self, api: Api, docs: dict[str, Doc], doc: Doc) -> None:
        revision = f"{doc.revision}-reversed"
        entry = ledger.tagged(ledger.reversal(doc.entry), doc.key, revision, None)
        api.add(entry, ledger.code(doc.key, revision))
        docs[doc.key] = Doc(doc.key, doc.revision, True, doc.entry, doc.payload, doc.tindex)
