"""The cleaner's rules, run by the machine's Python (no component needed):
`python -m unittest discover -s tests -t .` in plugins/py-contact-cleaner
with sdk/python on PYTHONPATH."""

import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import names  # noqa: E402
import phones  # noqa: E402
from cleaner import ContactCleaner  # noqa: E402
from nexo_sdk import Failed, InvalidConfig, Mapped, Record  # noqa: E402


class Names(unittest.TestCase):
    def test_cleaning(self) -> None:
        cases = [
            (("  ada ", " LOVELACE  ", None), ("Ada", "Lovelace")),
            (("Dr. Grace", "Hopper", None), ("Grace", "Hopper")),
            ((None, None, "HOPPER, Grace"), ("Grace", "Hopper")),
            ((None, None, "Mr  John   ronald  TOLKIEN"), ("John Ronald", "Tolkien")),
            (("ludwig van beethoven", None, None), ("Ludwig", "van Beethoven")),
            ((None, "o'neil, SHAQUILLE", None), ("Shaquille", "O'Neil")),
            (("jean-luc", "picard", None), ("Jean-Luc", "Picard")),
            (("ada", "BYRON-king", None), ("Ada", "Byron-King")),
            (("Ronald", "McDonald", None), ("Ronald", "McDonald")),
            ((None, None, "Ms. Cher"), ("", "Cher")),
        ]
        for given, expected in cases:
            with self.subTest(given=given):
                self.assertEqual(names.clean(*given), expected)

    def test_no_name_at_all(self) -> None:
        self.assertIsNone(names.clean(" ", None, "  "))


class Phones(unittest.TestCase):
    def test_to_e164(self) -> None:
        cases = [
            ("+49 30 1234567", "49", "+49301234567"),
            ("030 / 123 45 67", "49", "+49301234567"),
            ("0049-30-1234567", "+49", "+49301234567"),
            ("(555) 123-4567", "1", "+15551234567"),
            ("1-555-123-4567", "+1", "+15551234567"),
            ("tel:+44.20.7946.0018", "49", "+442079460018"),
        ]
        for raw, cc, expected in cases:
            with self.subTest(raw=raw):
                self.assertEqual(phones.to_e164(raw, cc), expected)

    def test_not_a_phone(self) -> None:
        for raw in ("call me maybe", "12", "+0 123 4567 89", "555-CALL-NOW", "1234567890123456789"):
            with self.subTest(raw=raw):
                with self.assertRaises(phones.NotAPhone):
                    phones.to_e164(raw, "49")


class Mapping(unittest.TestCase):
    def setUp(self) -> None:
        self.m = ContactCleaner()
        self.config = self.m.parse_config('{"default_country_code": "49"}')

    def run_one(self, payload: dict) -> object:
        return self.m.map_batch(self.config, [Record("contacts", "c1", json.dumps(payload), cursor="5")])[0]

    def test_a_contact_is_cleaned_and_keeps_its_other_fields(self) -> None:
        out = self.run_one({"first_name": "DR. ADA", "last_name": "lovelace", "phone": "030 1234567",
                            "email": " ada@example.com ", "roles": ["customer"], "stage": "won"})
        self.assertIsInstance(out, Mapped)
        (record,) = out.records  # type: ignore[attr-defined]
        self.assertEqual((record.id, record.cursor), ("c1", "5"))
        self.assertEqual(json.loads(record.payload), {
            "first_name": "Ada", "last_name": "Lovelace", "phone": "+49301234567",
            "email": "ada@example.com", "roles": ["customer"], "stage": "won"})

    def test_a_flat_crm_contact_keeps_its_other_fields(self) -> None:
        out = self.run_one({"id": "c1", "first_name": "ada", "last_name": "BYRON", "company": "Engines Ltd",
                            "phone": "+44 20 7946 0000", "lifecycle_stage": "lead"})
        self.assertEqual(json.loads(out.records[0].payload), {  # type: ignore[attr-defined]
            "id": "c1", "first_name": "Ada", "last_name": "Byron", "company": "Engines Ltd",
            "phone": "+442079460000", "lifecycle_stage": "lead"})

    def test_a_full_name_field_is_split(self) -> None:
        out = self.run_one({"name": "BYRON, augusta ada"})
        payload = json.loads(out.records[0].payload)  # type: ignore[attr-defined]
        self.assertEqual((payload["first_name"], payload["last_name"]), ("Augusta Ada", "Byron"))
        self.assertNotIn("name", payload)

    def test_records_it_cannot_clean_fail_alone_with_the_reason(self) -> None:
        out = self.run_one({"email": "x@example.com"})
        self.assertIsInstance(out, Failed)
        self.assertEqual(out.error.case, "rejected")  # type: ignore[attr-defined]
        self.assertIn("contact c1: no name", out.error.message)  # type: ignore[attr-defined]
        out = self.run_one({"first_name": "A", "last_name": "B", "phone": "n/a"})
        self.assertIsInstance(out, Failed)
        self.assertIn("contact c1: phone 'n/a' is not a phone number", out.error.message)  # type: ignore[attr-defined]

    def test_bad_phone_can_be_dropped_instead(self) -> None:
        config = self.m.parse_config('{"default_country_code": "49", "bad_phone": "drop"}')
        out = self.m.map_batch(config, [Record("contacts", "c1", '{"first_name": "A", "last_name": "B", "phone": "n/a"}')])
        self.assertNotIn("phone", json.loads(out[0].records[0].payload))  # type: ignore[union-attr]

    def test_config_errors_name_the_field(self) -> None:
        with self.assertRaises(InvalidConfig) as caught:
            self.m.parse_config('{"default_country_code": "049"}')
        self.assertIn("default_country_code", caught.exception.message)
        with self.assertRaises(InvalidConfig) as caught:
            self.m.parse_config("{}")
        self.assertIn("default_country_code: is required", caught.exception.message)


if __name__ == "__main__":
    unittest.main()
