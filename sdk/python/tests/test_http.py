import unittest

from nexo_sdk import errors, http
from nexo_sdk.host import set_host
from nexo_sdk.http import Request, Response

from .fakes import FakeHost, refusing


def status(code: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(code, headers or [], body)


class StatusClasses(unittest.TestCase):
    def test_2xx_passes(self) -> None:
        r = status(204)
        self.assertIs(r.error_for_status(), r)

    def test_each_status_class_maps_to_its_error(self) -> None:
        cases = [
            (401, errors.Auth),
            (403, errors.AccessDenied),
            (408, errors.Transient),
            (500, errors.Transient),
            (503, errors.Transient),
            (400, errors.Rejected),
            (404, errors.Rejected),
            (422, errors.Rejected),
            (418, errors.Rejected),
            (302, errors.Internal),
        ]
        for code, cls in cases:
            with self.subTest(code=code):
                with self.assertRaises(cls) as caught:
                    status(code, b"nope").error_for_status()
                self.assertIs(type(caught.exception), cls)
                self.assertIn(f"HTTP {code}", caught.exception.message)

    def test_429_uses_retry_after_seconds_else_one_second(self) -> None:
        with self.assertRaises(errors.RateLimited) as caught:
            status(429, headers=[("Retry-After", "7")]).error_for_status()
        self.assertEqual(caught.exception.retry_after_ms, 7000)
        with self.assertRaises(errors.RateLimited) as caught:
            status(429).error_for_status()
        self.assertEqual(caught.exception.retry_after_ms, 1000)

    def test_error_text_masks_credentials_and_is_bounded(self) -> None:
        body = b"denied: Bearer abc123 password=hunter2 " + b"x" * 500
        with self.assertRaises(errors.Auth) as caught:
            status(401, body).error_for_status()
        text = caught.exception.message
        self.assertNotIn("abc123", text)
        self.assertNotIn("hunter2", text)
        self.assertLess(len(text), 260)


class HostRefusals(unittest.TestCase):
    def setUp(self) -> None:
        self.host = FakeHost()
        self.previous = set_host(self.host)

    def tearDown(self) -> None:
        set_host(self.previous)

    def refused(self, kind: str, detail: str | int | None = None) -> errors.PluginError:
        self.host.answer = refusing(kind, detail)
        with self.assertRaises(errors.PluginError) as caught:
            http.send(Request.get("https://api.example.com/x"))
        return caught.exception

    def test_budget_exhausted_is_rate_limited_with_the_hosts_delay(self) -> None:
        e = self.refused("budget-exhausted", 2500)
        self.assertIsInstance(e, errors.RateLimited)
        self.assertEqual(e.retry_after_ms, 2500)  # type: ignore[attr-defined]

    def test_needs_authorization_is_auth(self) -> None:
        e = self.refused("needs-authorization", "access_token")
        self.assertIsInstance(e, errors.Auth)
        self.assertIn("access_token", e.message)

    def test_origin_and_secret_refusals_are_access_denied(self) -> None:
        for kind in ("origin-not-allowed", "address-not-allowed", "redirect-not-allowed", "secret-not-allowed"):
            with self.subTest(kind=kind):
                self.assertIsInstance(self.refused(kind, "http://x:1"), errors.AccessDenied)

    def test_timeouts_and_connection_failures_are_transient(self) -> None:
        self.assertIsInstance(self.refused("timeout"), errors.Transient)
        self.assertIsInstance(self.refused("connection-failed", "reset"), errors.Transient)

    def test_request_carries_the_secret_template_not_a_value(self) -> None:
        http.send(Request.get("https://api.example.com/x").bearer_secret("token").query("q", "a b&c"))
        sent = self.host.sent[-1]
        self.assertEqual(sent.headers, [("Authorization", "Bearer {{secret:token}}")])
        self.assertEqual(sent.url, "https://api.example.com/x?q=a%20b%26c")

    def test_secret_names_are_checked(self) -> None:
        self.assertEqual(http.secret("api_key"), "{{secret:api_key}}")
        with self.assertRaises(ValueError):
            http.secret("a}}{{secret:b")

    def test_json_body_sets_the_content_type(self) -> None:
        req = Request.post("https://x.example/y").json({"a": "é"})
        self.assertEqual(req.body, '{"a":"é"}'.encode())
        self.assertIn(("Content-Type", "application/json"), req.headers)

    def test_unknown_method_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            Request("TRACE", "https://x.example")


if __name__ == "__main__":
    unittest.main()
