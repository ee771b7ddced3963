"""hledger-web's JSON API (checked against hledger-web 1.25): reading the
journal (`GET /transactions`), appending (`PUT /add`), and the history of
Nexo's documents in it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledger import Entry, Posting, decode_doc, decode_key
from nexo_sdk import AccessDenied, Internal, Rejected, Request, Response

#: Pause between the reload request and an add (see `add`).
SETTLE_S = 0.02


@dataclass
class Doc:
    """The journal's view of one Nexo document."""

    key: str
    revision: int
    reversed: bool
    entry: Entry
    payload: dict[str, Any] | None
    tindex: int


class Api:
    def __init__(self, config: dict[str, Any]) -> None:
        self.base = config["base_url"].rstrip("/")
        self.timeout_ms = int(config["timeout_ms"])

    def _request(self, method: str, path: str) -> Request:
        return Request(method, self.base + path, timeout_ms=self.timeout_ms)

    def version(self) -> str:
        return self._request("GET", "/version").send().error_for_status().text().strip()

    def transactions(self) -> list[dict[str, Any]]:
        r = self._request("GET", "/transactions").header("Accept", "application/json").send()
        value = r.error_for_status().json()
        if not isinstance(value, list):
            raise Internal("hledger-web's /transactions is not a JSON list; is base_url an hledger-web --serve-api?")
        return value

    def add(self, entry: Entry, code: str) -> None:
        """Append `entry`. hledger-web reloads the journal only when the file
        time is later than its last read, in coarse ticks: so first make it
        reload, wait a little, and only then append (else a later read can
        miss this add and the next write would duplicate it)."""
        self._request("GET", "/accountnames").send().error_for_status()
        time.sleep(SETTLE_S)
        r = self._request("PUT", "/add").json(add_body(entry, code)).send()
        if r.status in (403, 405):
            raise AccessDenied(
                f"hledger-web refused to add transaction {code} (HTTP {r.status}): "
                "start it with the `add` capability (--capabilities=view,add, the default)"
            )
        _ok_or_rejected(r, code)


def _ok_or_rejected(r: Response, code: str) -> None:
    try:
        r.error_for_status()
    except Rejected as e:
        raise Rejected(f"transaction {code}: {e.message}") from None


def _mantissa(amount: Decimal) -> tuple[int, int]:
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):
        raise Rejected(f"amount {amount} is not a finite number")
    mantissa = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    if exponent > 0:
        return mantissa * 10**exponent, 0
    return mantissa, -exponent


def add_body(entry: Entry, code: str) -> dict[str, Any]:
    """The JSON `PUT /add` takes; hledger-web 1.25 needs every field of its
    Transaction type, even those it recomputes."""
    postings = []
    for p in entry.postings:
        mantissa, places = _mantissa(p.amount)
        if abs(mantissa) >= 2**63:
            raise Rejected(f"amount {p.amount} has too many digits for hledger-web's JSON")
        postings.append({
            "paccount": p.account,
            "pamount": [{
                "acommodity": p.commodity,
                "aprice": None,
                "aquantity": {"decimalMantissa": mantissa, "decimalPlaces": places, "floatingPoint": float(p.amount)},
                "astyle": {"ascommodityside": "L", "ascommodityspaced": True, "asdecimalpoint": ".",
                           "asdigitgroups": None, "asprecision": places},
            }],
            "pbalanceassertion": None,
            "pcomment": f"{p.comment}\n" if p.comment else "",
            "pdate": None,
            "pdate2": None,
            "poriginal": None,
            "pstatus": "Unmarked",
            "ptags": [],
            "ptransaction_": "0",
            "ptype": "RegularPosting",
        })
    position = {"sourceColumn": 1, "sourceLine": 1, "sourceName": ""}
    return {
        "tcode": code,
        "tcomment": "".join(f"{k}: {v}\n" for k, v in entry.tags),
        "tdate": entry.date,
        "tdate2": None,
        "tdescription": entry.description,
        "tindex": 0,
        "tpostings": postings,
        "tprecedingcomment": "",
        "tsourcepos": [position, position],
        "tstatus": "Unmarked",
        "ttags": [],
    }


def _entry_of(t: dict[str, Any]) -> Entry | None:
    postings = []
    for p in t.get("tpostings", []):
        amounts = p.get("pamount", [])
        if len(amounts) != 1:
            return None
        q = amounts[0].get("aquantity", {})
        amount = Decimal(int(q.get("decimalMantissa", 0))).scaleb(-int(q.get("decimalPlaces", 0)))
        postings.append(Posting(p.get("paccount", ""), amount, amounts[0].get("acommodity", ""), p.get("pcomment", "").strip()))
    tags = [(str(k), str(v)) for k, v in t.get("ttags", [])]
    return Entry(t.get("tdate", ""), t.get("tdescription", "").strip(), postings, tags)


def history(transactions: list[dict[str, Any]]) -> dict[str, Doc]:
    """Key → the latest state of each Nexo document, in journal order."""
    docs: dict[str, Doc] = {}
    for t in transactions:
        tags = {str(k): str(v) for k, v in t.get("ttags", [])}
        if "nexo-key" not in tags or "nexo-rev" not in tags:
            continue
        key = decode_key(tags["nexo-key"])
        rev_text = tags["nexo-rev"].strip()
        reversed_ = rev_text.endswith("-reversed")
        try:
            revision = int(rev_text.removesuffix("-reversed"))
        except ValueError:
            continue
        entry = _entry_of(t)
        if key is None or entry is None:
            continue
        payload = decode_doc(tags["nexo-doc"]) if "nexo-doc" in tags else None
        previous = docs.get(key)
        if previous is not None and (revision, reversed_) < (previous.revision, previous.reversed):
            continue
        docs[key] = Doc(
            key,
            revision,
            reversed_,
            entry if not reversed_ or previous is None else previous.entry,
            payload if payload is not None else (previous.payload if previous else None),
            int(t.get("tindex", 0)),
        )
    return docs
