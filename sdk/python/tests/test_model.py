import json
import unittest
from decimal import Decimal

from nexo_sdk import Contact, Invoice
from nexo_sdk.build import custom_section, leb128
from nexo_sdk.errors import Rejected

INVOICE = {
    "customer": {"kind": "company", "system": "xero", "id": "c-9"},
    "issue_date": "2024-03-01",
    "currency": "EUR",
    "status": "authorised",
    "lines": [
        {"description": "Consulting", "quantity": "2", "unit_price": "10.00", "discount": "0",
         "tax_rate": "20", "line_amount": "20.00", "account_code": "200"}
    ],
    "subtotal": "20.00",
    "total_tax": "4.00",
    "total": "24.00",
    "x_custom": 1,
}


class Model(unittest.TestCase):
    def test_contact_round_trips_with_extra_fields(self) -> None:
        payload = {"id": "7", "first_name": "Ada", "last_name": "Lovelace", "roles": ["customer"],
                   "external_refs": [{"system": "crm", "id": "7"}], "stage": "lead"}
        c = Contact.from_json(payload)
        self.assertEqual(c.extra, {"stage": "lead"})
        self.assertEqual(c.to_json(), payload)

    def test_invoice_round_trips_and_validates(self) -> None:
        inv = Invoice.from_json(INVOICE)
        inv.validate()
        self.assertEqual(inv.total, Decimal("24.00"))
        self.assertEqual(inv.to_json(), INVOICE)

    def test_invoice_arithmetic_errors_name_the_field(self) -> None:
        bad = json.loads(json.dumps(INVOICE))
        bad["lines"][0]["line_amount"] = "21.00"
        with self.assertRaises(Rejected) as caught:
            Invoice.from_json(bad).validate()
        self.assertIn("lines[0].line_amount", caught.exception.message)
        bad = dict(INVOICE, total="25.00")
        with self.assertRaises(Rejected) as caught:
            Invoice.from_json(bad).validate()
        self.assertIn("total:", caught.exception.message)

    def test_amounts_must_be_strings(self) -> None:
        with self.assertRaises(Rejected) as caught:
            Invoice.from_json(dict(INVOICE, total=24.0))
        self.assertIn("not a JSON number", caught.exception.message)
        with self.assertRaises(Rejected):
            Invoice.from_json(dict(INVOICE, currency="XXX"))


class Section(unittest.TestCase):
    def test_leb128_and_custom_section_layout(self) -> None:
        self.assertEqual(leb128(0), b"\x00")
        self.assertEqual(leb128(127), b"\x7f")
        self.assertEqual(leb128(128), b"\x80\x01")
        self.assertEqual(leb128(300), b"\xac\x02")
        section = custom_section("nexo-sdk", b"sdk=python-0.1.0")
        self.assertEqual(section[0], 0)
        self.assertEqual(section[1], len(section) - 2)
        self.assertEqual(section[2:11], b"\x08nexo-sdk")


if __name__ == "__main__":
    unittest.main()
