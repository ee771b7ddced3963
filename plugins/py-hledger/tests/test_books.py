"""The connector's logic against an in-memory stand-in for hledger-web
(the real one is exercised by tests/tests/python_plugins.rs)."""

import json
import sys
import unittest
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger  # noqa: E402
from books import Hledger  # noqa: E402
from nexo_sdk import Created, Deleted, Failed, Operation, Unchanged, Updated, WriteRecord  # noqa: E402
from nexo_sdk.host import set_host  # noqa: E402
from nexo_sdk.http import Request, Response  # noqa: E402


class FakeHledger:
    """Answers /version, /accountnames, /transactions and PUT /add the way
    hledger-web 1.25 does (tags parsed from the comment, tindex from 1)."""

    def __init__(self) -> None:
        self.journal: list[dict[str, Any]] = []
        self.logs: list[tuple[str, str]] = []

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def send(self, request: Request) -> Response:
        path = request.url.split("127.0.0.1:5000", 1)[1]
        if request.method == "PUT" and path == "/add":
            t = json.loads(request.body or b"{}")
            t["tindex"] = len(self.journal) + 1
            t["ttags"] = [list(line.split(": ", 1)) for line in t["tcomment"].splitlines() if ": " in line]
            self.journal.append(t)
            return Response(201, [], b"")
        if path == "/transactions":
            return Response(200, [], json.dumps(self.journal).encode())
        return Response(200, [], b"1.25")

    def balances(self) -> dict[str, int]:
        sums: dict[str, int] = {}
        for t in self.journal:
            for p in t["tpostings"]:
                q = p["pamount"][0]["aquantity"]
                cents = q["decimalMantissa"] * 10 ** (2 - q["decimalPlaces"])
                sums[p["paccount"]] = sums.get(p["paccount"], 0) + cents
        return {k: v for k, v in sums.items() if v}


def invoice(hours: int, total: str | None = None) -> str:
    return json.dumps({
        "customer": {"kind": "company", "system": "crm", "id": "c-9"}, "number": "INV-1",
        "issue_date": "2024-03-01", "currency": "EUR", "status": "authorised",
        "lines": [{"description": "Consulting", "quantity": str(hours), "unit_price": "10.00", "tax_rate": "20",
                   "line_amount": f"{hours * 10}.00", "account_code": "200"}],
        "subtotal": f"{hours * 10}.00", "total_tax": f"{hours * 2}.00", "total": total or f"{hours * 12}.00"})


class Books(unittest.TestCase):
    def setUp(self) -> None:
        self.server = FakeHledger()
        self.previous = set_host(self.server)
        self.c = Hledger()
        self.config = self.c.parse_config(json.dumps({"base_url": "http://127.0.0.1:5000",
                                                      "account_codes": {"200": "revenue:consulting"}}))

    def tearDown(self) -> None:
        set_host(self.previous)

    def write(self, *records: WriteRecord) -> list[Any]:
        return [r.outcome for r in self.c.write(self.config, "invoices", list(records))]

    def test_create_replay_update_delete(self) -> None:
        first = WriteRecord("invoices", "", invoice(2), "key 1")
        self.assertEqual(self.write(first), [Created("key 1")])
        self.assertEqual(self.server.balances(), {"assets:receivable": 2400, "revenue:consulting": -2000,
                                                  "liabilities:tax payable": -400})
        self.assertEqual(self.write(first), [Unchanged("key 1")], "a replay adds nothing")
        self.assertEqual(len(self.server.journal), 1)
        self.assertEqual(self.write(WriteRecord("invoices", "key 1", invoice(3), "key 1")), [Updated("key 1")])
        self.assertEqual(self.server.balances()["assets:receivable"], 3600)
        codes = [t["tcode"] for t in self.server.journal]
        self.assertEqual(codes, ["nexo:key%201/1", "nexo:key%201/1-reversed", "nexo:key%201/2"])
        self.assertEqual(self.write(WriteRecord("invoices", "key 1", "{}", "key 1", Operation.DELETE)), [Deleted("key 1")])
        self.assertEqual(self.server.balances(), {})

    def test_an_unbalanced_invoice_is_rejected_alone(self) -> None:
        out = self.write(WriteRecord("invoices", "", invoice(2, total="25.00"), "bad"),
                         WriteRecord("invoices", "", invoice(1), "good"))
        self.assertIsInstance(out[0], Failed)
        self.assertIn("total", out[0].error.message)
        self.assertEqual(out[1], Created("good"))
        self.assertEqual(len(self.server.journal), 1)

    def test_reads_the_latest_versions_incrementally(self) -> None:
        self.write(WriteRecord("invoices", "", invoice(2), "a"), WriteRecord("invoices", "", invoice(1), "b"))
        page = self.c.read(self.config, "invoices", None)
        self.assertEqual([r.id for r in page.records], ["a", "b"])
        self.assertEqual(json.loads(page.records[0].payload)["total"], "24.00")
        again = self.c.read(self.config, "invoices", page.state)
        self.assertEqual(again.records, [])
        self.write(WriteRecord("invoices", "a", invoice(4), "a"))
        changed = self.c.read(self.config, "invoices", page.state)
        self.assertEqual([(r.id, json.loads(r.payload)["total"]) for r in changed.records], [("a", "48.00")])

    def test_entry_balance_check(self) -> None:
        entry = ledger.Entry("2024-01-01", "x", [ledger.Posting("a", ledger.Decimal("1.00"), "EUR")])
        self.assertEqual(entry.imbalance(), {"EUR": ledger.Decimal("1.00")})
        self.assertEqual(ledger.decode_key(ledger.encode_key("a/b) c,d")), "a/b) c,d")


if __name__ == "__main__":
    unittest.main()
