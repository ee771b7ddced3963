"""The Connector and Mapper base classes, and logging, kv and cursor state."""

import logging
import unittest

from nexo_sdk import (
    Connector,
    Created,
    Failed,
    InvalidConfig,
    Mapped,
    Mapper,
    Record,
    Rejected,
    Transient,
    WriteRecord,
    kv,
    log,
)
from nexo_sdk.errors import AccessDenied, Internal, from_exception
from nexo_sdk.host import set_host
from nexo_sdk.state import Cursor

from .fakes import FakeHost


class Upper(Mapper):
    config_schema = {"type": "object", "properties": {"field": {"type": "string", "default": "name"}}}

    def map_record(self, config, record):
        value = record.json()
        if value.get("skip"):
            return None
        if config["field"] not in value:
            raise Rejected(f"record {record.id}: no {config['field']}")
        if value.get("bug"):
            raise KeyError("oops")
        value[config["field"]] = value[config["field"]].upper()
        return Record.of(record.stream, record.id, value)


class MapperBase(unittest.TestCase):
    def test_one_outcome_per_input_with_failures_alone(self) -> None:
        m = Upper()
        batch = [
            Record("contacts", "1", '{"name": "ada"}'),
            Record("contacts", "2", '{"other": 1}'),
            Record("contacts", "3", '{"skip": true}'),
            Record("contacts", "4", "not json"),
        ]
        out = m.map_batch(m.parse_config("{}"), batch)
        self.assertEqual(len(out), 4)
        self.assertEqual(out[0], Mapped([Record("contacts", "1", '{"name":"ADA"}')]))
        self.assertEqual(out[1], Failed(Rejected("record 2: no name")))
        self.assertEqual(out[2], Mapped([]))
        self.assertIsInstance(out[3], Failed)
        self.assertIn("not JSON", out[3].error.message)  # type: ignore[union-attr]

    def test_a_bug_fails_the_batch_not_one_record(self) -> None:
        m = Upper()
        with self.assertRaises(KeyError):
            m.map_batch({"field": "name"}, [Record("c", "1", '{"name": "a", "bug": 1}')])
        self.assertEqual(from_exception(KeyError("oops")), Internal("the plugin raised KeyError: 'oops'"))

    def test_bad_config_is_invalid_config(self) -> None:
        with self.assertRaises(InvalidConfig):
            Upper().parse_config('{"field": 3}')


class Books(Connector):
    config_schema = {"type": "object", "required": ["fail"], "properties": {"fail": {"type": "string"}}}

    def write_record(self, config, stream, record):
        if record.json().get("bad"):
            raise Rejected("unbalanced")
        if config["fail"] == "transient":
            raise Transient("503")
        return Created("new-" + record.idempotency_key)


class ConnectorBase(unittest.TestCase):
    def test_a_rejected_record_fails_alone(self) -> None:
        c = Books()
        out = c.write(c.parse_config('{"fail": "no"}'), "invoices", [
            WriteRecord("invoices", "", '{"bad": true}', "k1"),
            WriteRecord("invoices", "", "{}", "k2"),
        ])
        self.assertEqual(out[0].outcome, Failed(Rejected("unbalanced")))
        self.assertEqual(out[1].id, "new-k2")
        self.assertEqual(out[1].outcome, Created("new-k2"))

    def test_a_batch_level_error_ends_the_call(self) -> None:
        with self.assertRaises(Transient):
            Books().write({"fail": "transient"}, "invoices", [WriteRecord("invoices", "", "{}", "k")])

    def test_missing_required_config_names_the_field(self) -> None:
        with self.assertRaises(InvalidConfig) as caught:
            Books().parse_config("{}")
        self.assertIn("fail: is required", caught.exception.message)


class HostCalls(unittest.TestCase):
    def setUp(self) -> None:
        self.host = FakeHost()
        self.previous = set_host(self.host)

    def tearDown(self) -> None:
        set_host(self.previous)

    def test_kv_round_trip_and_not_granted(self) -> None:
        kv.set("a", "1")
        self.assertEqual(kv.get("a"), b"1")
        self.assertEqual(kv.list_keys("a"), ["a"])
        kv.delete("a")
        self.assertIsNone(kv.get("a"))
        self.host.kv_granted = False
        with self.assertRaises(AccessDenied) as caught:
            kv.get("a")
        self.assertIn("kv_bytes", caught.exception.message)

    def test_python_logging_reaches_the_host_log(self) -> None:
        log.route_logging()
        logging.getLogger("plugin").warning("careful")
        log.info("hello")
        self.assertIn(("warn", "plugin: careful"), self.host.logs)
        self.assertIn(("info", "hello"), self.host.logs)
        with self.assertRaises(ValueError):
            log.log("loud", "x")


class CursorState(unittest.TestCase):
    def test_ties_on_the_cursor_are_neither_skipped_nor_repeated(self) -> None:
        c = Cursor()
        c.observe("2026-01-01T00:00:00Z", "a")
        c = Cursor.from_state(c.to_state())
        self.assertTrue(c.is_seen("2026-01-01T00:00:00Z", "a"))
        self.assertFalse(c.is_seen("2026-01-01T00:00:00Z", "b"))
        self.assertTrue(c.is_seen("2025-12-31T23:59:59Z", "z"))
        self.assertFalse(c.is_seen("2026-01-01T00:00:01Z", "a"))

    def test_newer_value_resets_ties_and_paging_keeps_its_query(self) -> None:
        c = Cursor()
        c.observe("1", "a")
        c.observe("1", "b")
        c.observe("2", "c")
        self.assertEqual((c.value, c.ids_at_value), ("2", ["c"]))
        c.set_page("p2", c.query_value())
        c.observe("3", "d")
        self.assertEqual(c.query_value(), "2")
        c.set_page(None, "2")
        self.assertEqual(c.query_value(), "3")

    def test_same_json_as_the_rust_sdk(self) -> None:
        c = Cursor("2", ["c"], "tok", "1")
        self.assertEqual(c.to_state(), '{"value":"2","ids_at_value":["c"],"page_token":"tok","paging_from":"1"}')
        self.assertEqual(Cursor().to_state(), "{}")
        with self.assertRaises(Internal):
            Cursor.from_state("[1]")


if __name__ == "__main__":
    unittest.main()
