"""The adapter over componentize-py's generated bindings (`_bindings`),
against bindings generated here for the connector world (skipped when
componentize-py is not installed next to this Python): records, outcomes
and errors cross the boundary as the WIT cases, an unexpected exception is
`internal`, and host refusals come back as the plugin's errors."""

import importlib
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from nexo_sdk import Auth, Connector, Created, RateLimited, Record, Rejected, http
from nexo_sdk import host as sdk_host
from nexo_sdk.http import Request

WIT = Path(__file__).resolve().parents[3] / "wit" / "1.1.0"


class Books(Connector):
    config_schema = {"type": "object", "required": ["mode"], "properties": {"mode": {"enum": ["ok", "bug"]}}}

    def check(self, config):
        if config["mode"] == "bug":
            raise KeyError("missing")

    def write_record(self, config, stream, record):
        if record.json().get("bad"):
            raise Rejected("does not balance")
        return Created("id-" + record.idempotency_key)


class Adapter(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        tool = Path(sys.executable).parent / "componentize-py"
        if not tool.is_file():
            raise unittest.SkipTest("componentize-py is not installed next to this Python (cargo xtask setup)")
        cls.tmp = tempfile.mkdtemp()
        subprocess.run([str(tool), "-d", str(WIT), "-w", "connector", "bindings", cls.tmp], check=True,
                       capture_output=True)
        sys.path.insert(0, cls.tmp)
        cls.previous = sdk_host.current()
        cls.b = importlib.import_module("nexo_sdk._bindings")
        cls.wit = cls.b.wit  # the generated types, wherever componentize-py put them
        cls.wit_http = importlib.import_module("wit_world.imports.http")
        cls.Err = importlib.import_module("componentize_py_types").Err
        cls.logs = []
        importlib.import_module("wit_world.imports.log").log = lambda level, message: cls.logs.append((level.name, message))

    @classmethod
    def tearDownClass(cls) -> None:
        sdk_host.set_host(cls.previous)
        sys.path.remove(cls.tmp)
        for name in [m for m in sys.modules if m.startswith(("wit_world", "componentize_py", "nexo_sdk._bindings"))]:
            del sys.modules[name]
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_write_results_and_errors_are_the_wit_cases(self) -> None:
        ops = self.b.operations_for(Books)()
        wit = self.wit
        out = ops.write('{"mode": "ok"}', "invoices", [
            wit.WriteRecord("invoices", "", wit.Operation.UPSERT, '{"bad": true}', "k1"),
            wit.WriteRecord("invoices", "", wit.Operation.UPSERT, "{}", "k2"),
        ])
        self.assertEqual(out[0], wit.WriteResult("", wit.WriteOutcome_Failed(wit.Error_Rejected("does not balance"))))
        self.assertEqual(out[1], wit.WriteResult("id-k2", wit.WriteOutcome_Created("id-k2")))

    def test_bad_config_and_bugs_end_the_call_with_their_case(self) -> None:
        ops = self.b.operations_for(Books)()
        with self.assertRaises(self.Err) as caught:
            ops.check("{}")
        self.assertIsInstance(caught.exception.value, self.wit.Error_InvalidConfig)
        self.assertIn("mode: is required", caught.exception.value.value)
        with self.assertRaises(self.Err) as caught:
            ops.check('{"mode": "bug"}')
        self.assertEqual(caught.exception.value, self.wit.Error_Internal("the plugin raised KeyError: 'missing'"))
        level, message = self.logs[-1]
        self.assertEqual(level, "ERROR")
        self.assertIn("check failed: Traceback", message)

    def test_records_and_rate_limits_convert(self) -> None:
        # (Map outcomes exist in the mapper world only: the end-to-end
        # acceptance test in tests/tests/python_plugins.rs covers them.)
        wit = self.wit
        self.assertEqual(self.b.wit_record(Record("c", "1", "{}", cursor="5")),
                         wit.Record("c", "1", wit.Operation.UPSERT, "{}", "5"))
        self.assertEqual(self.b.wit_error(RateLimited(1500)), wit.Error_RateLimited(1500))
        with self.assertRaises(AttributeError) as caught:
            self.wit.MapOutcome_Mapped
        self.assertIn("nexo_sdk.build", str(caught.exception))

    def test_host_refusals_come_back_as_plugin_errors(self) -> None:
        sdk_host.set_host(self.b.WitHost())
        original = self.wit_http.send
        try:
            for refusal, expected in [
                (self.wit_http.HttpError_BudgetExhausted(2500), RateLimited(2500)),
                (self.wit_http.HttpError_NeedsAuthorization("access_token"), Auth),
            ]:
                def refuse(_req, refusal=refusal):
                    raise self.Err(refusal)

                self.wit_http.send = refuse
                with self.assertRaises(type(expected) if not isinstance(expected, type) else expected) as caught:
                    http.send(Request.get("https://x.example/y"))
                if not isinstance(expected, type):
                    self.assertEqual(caught.exception, expected)
            # A UTF-8 body comes as text, any other as bytes: the SDK gives
            # the bytes the system sent either way.
            for body, sent in [
                (self.wit_http.ResponseBody_Text("Zoë"), "Zoë".encode()),
                (self.wit_http.ResponseBody_Bytes(b"Zo\xeb"), b"Zo\xeb"),
            ]:
                self.wit_http.send = lambda req, body=body: self.wit_http.Response(200, [("a", "b")], body)
                r = http.send(Request.get("https://x.example/y"))
                self.assertEqual((r.status, r.headers, r.body), (200, [("a", "b")], sent))
        finally:
            self.wit_http.send = original


if __name__ == "__main__":
    unittest.main()
