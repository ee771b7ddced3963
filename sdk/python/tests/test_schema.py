import unittest

from nexo_sdk.errors import InvalidConfig
from nexo_sdk.schema import errors, parse_config

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["base_url", "accounts"],
    "properties": {
        "base_url": {"type": "string", "format": "uri"},
        "email": {"type": "string", "format": "email"},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
        "mode": {"enum": ["a", "b"], "default": "a"},
        "code": {"type": "string", "minLength": 2, "pattern": "^[A-Z]+$"},
        "accounts": {
            "type": "object",
            "required": ["income"],
            "properties": {"income": {"type": "string", "minLength": 1}},
        },
        "tags": {"type": "array", "items": {"type": "string"}},
        "maybe": {"type": ["string", "null"]},
    },
}


class Validation(unittest.TestCase):
    def test_a_good_config_gets_its_defaults(self) -> None:
        cfg = parse_config('{"base_url": "http://127.0.0.1:5000", "accounts": {"income": "revenues"}}', SCHEMA)
        self.assertEqual(cfg["page_size"], 100)
        self.assertEqual(cfg["mode"], "a")

    def test_problems_name_the_field_path(self) -> None:
        bad = {
            "base_url": "not a url",
            "email": "nobody",
            "page_size": 0,
            "mode": "c",
            "code": "a",
            "accounts": {"income": ""},
            "tags": ["x", 3],
            "extra": 1,
        }
        found = "\n".join(errors(bad, SCHEMA))
        for expected in (
            "base_url: \"not a url\" is not an absolute URI",
            "email: \"nobody\" is not an e-mail address",
            "page_size: must be at least 1",
            "mode: must be one of \"a\", \"b\"",
            "code: must have at least 2 characters",
            "code: \"a\" does not match the pattern",
            "accounts.income: must have at least 1 characters",
            "tags[1]: must be string",
            "extra: is not a known field",
        ):
            self.assertIn(expected, found)

    def test_required_fields_and_types(self) -> None:
        found = errors({"accounts": {}}, SCHEMA)
        self.assertIn("base_url: is required", found)
        self.assertIn("accounts.income: is required", found)
        self.assertEqual(errors({"base_url": "http://x", "accounts": {"income": "r"}, "page_size": True}, SCHEMA),
                         ["page_size: must be integer, not boolean true"])
        self.assertEqual(errors({"base_url": "http://x", "accounts": {"income": "r"}, "maybe": None}, SCHEMA), [])

    def test_parse_config_raises_invalid_config(self) -> None:
        with self.assertRaises(InvalidConfig) as caught:
            parse_config('{"accounts": {"income": "r"}}', SCHEMA)
        self.assertIn("base_url: is required", caught.exception.message)
        with self.assertRaises(InvalidConfig) as caught:
            parse_config("{not json", SCHEMA)
        self.assertIn("not JSON", caught.exception.message)
        with self.assertRaises(InvalidConfig):
            parse_config("[]", SCHEMA)


if __name__ == "__main__":
    unittest.main()
