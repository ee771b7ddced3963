"""Invoices as hledger transactions: the entry an invoice posts, its
reversal, the balance check, and the tags that make writes idempotent.

Every Nexo transaction carries three tags in its comment:
`nexo-key` (the document: the idempotency key of its first write,
percent-encoded), `nexo-rev` (`N`, or `N-reversed` for the reversal of
revision N) and `nexo-doc` (the invoice as written, base64 JSON).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nexo_sdk import Invoice, Rejected

#: Statuses that owe money and so post a transaction.
POSTING_STATUSES = ("authorised", "paid")
_SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:")


@dataclass(frozen=True)
class Posting:
    account: str
    amount: Decimal
    commodity: str
    comment: str = ""


@dataclass
class Entry:
    date: str
    description: str
    postings: list[Posting]
    tags: list[tuple[str, str]] = field(default_factory=list)

    def imbalance(self) -> dict[str, Decimal]:
        """Commodity → non-zero sum of the postings (empty: balanced)."""
        sums: dict[str, Decimal] = {}
        for p in self.postings:
            sums[p.commodity] = sums.get(p.commodity, Decimal(0)) + p.amount
        return {c: s for c, s in sums.items() if s != 0}


def encode_key(key: str) -> str:
    """A key safe inside a tag value and a code: no space, comma, `/` or `)`."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in key.encode())


def decode_key(text: str) -> str | None:
    out = bytearray()
    i = 0
    raw = text.encode()
    while i < len(raw):
        if raw[i] == ord("%"):
            try:
                out.append(int(raw[i + 1 : i + 3].decode(), 16))
            except ValueError:
                return None
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        return None


def encode_doc(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return base64.b64encode(text.encode()).decode()


def decode_doc(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(base64.b64decode(text.strip(), validate=True))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def invoice_entry(invoice: Invoice, accounts: dict[str, str], codes: dict[str, str]) -> Entry:
    """The balanced entry of an authorised or paid invoice: the receivable
    debited with the total, revenue credited per line, tax credited.
    `Rejected` (naming the invoice) when the postings would not balance."""
    cur = invoice.currency
    name = invoice.number or invoice.reference or "(no number)"
    postings = [Posting(accounts["receivable"], invoice.total, cur)]
    for line in invoice.lines:
        account = codes.get(line.account_code or "", accounts["revenue"])
        detail = f"{line.description} ({line.quantity} × {line.unit_price}"
        detail += f", tax {line.tax_rate} %)" if line.tax_rate else ")"
        postings.append(Posting(account, -line.line_amount, cur, detail.strip()))
    if invoice.total_tax:
        postings.append(Posting(accounts["tax"], -invoice.total_tax, cur))
    entry = Entry(invoice.issue_date, f"{invoice.customer.id} | Invoice {name}", postings)
    off = entry.imbalance()
    if off:
        text = ", ".join(f"{amount} {c}" for c, amount in off.items())
        raise Rejected(f"invoice {name}: its transaction would not balance (off by {text}); nothing was written")
    return entry


def tagged(entry: Entry, key: str, revision: str, doc: dict[str, Any] | None) -> Entry:
    tags = [("nexo-key", encode_key(key)), ("nexo-rev", revision)]
    if doc is not None:
        tags.append(("nexo-doc", encode_doc(doc)))
    return Entry(entry.date, entry.description, entry.postings, tags)


def reversal(entry: Entry) -> Entry:
    """Every posting negated: cancels `entry` at the same date."""
    postings = [Posting(p.account, -p.amount, p.commodity, p.comment) for p in entry.postings]
    return Entry(entry.date, f"Reversal: {entry.description}", postings)


def code(key: str, revision: str) -> str:
    """The transaction code shown in the journal: `nexo:KEY/REV`."""
    return f"nexo:{encode_key(key)}/{revision}"
