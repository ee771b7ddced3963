"""Outbound HTTP through the host: requests with secret templates, and the
mapping of statuses and host refusals to the plugin's error classes."""

from __future__ import annotations

import json as _json
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from . import host as _host
from .errors import AccessDenied, Auth, Internal, PluginError, RateLimited, Rejected, Transient

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

#: How much of an error body goes into an error message.
EXCERPT_CHARS = 200


def secret(name: str) -> str:
    """The template the host replaces by secret `name`'s value at send time,
    only toward origins the secret is bound to: `{{secret:NAME}}`."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"secret name {name!r} must be letters, digits, '_', '.' or '-'")
    return "{{secret:" + name + "}}"


@dataclass
class Request:
    """An HTTP request; header values and basic-auth parts may hold
    `secret(...)` templates."""

    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    basic_auth: tuple[str, str] | None = None
    body: bytes | None = None
    timeout_ms: int | None = None

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if self.method not in METHODS:
            raise ValueError(f"HTTP method {self.method!r} is not one of {', '.join(METHODS)}")

    @classmethod
    def get(cls, url: str) -> "Request":
        return cls("GET", url)

    @classmethod
    def post(cls, url: str) -> "Request":
        return cls("POST", url)

    @classmethod
    def put(cls, url: str) -> "Request":
        return cls("PUT", url)

    @classmethod
    def delete(cls, url: str) -> "Request":
        return cls("DELETE", url)

    def query(self, name: str, value: str | None) -> "Request":
        """Append `name=value` (percent-encoded); `None` or `""` is skipped."""
        if value:
            sep = "&" if "?" in self.url else "?"
            self.url = f"{self.url}{sep}{quote(name, safe='')}={quote(str(value), safe='')}"
        return self

    def header(self, name: str, value: str) -> "Request":
        self.headers.append((name, value))
        return self

    def bearer_secret(self, name: str) -> "Request":
        """`Authorization: Bearer {{secret:NAME}}`."""
        return self.header("Authorization", "Bearer " + secret(name))

    def json(self, value: Any) -> "Request":
        """A JSON body with its content type."""
        self.body = _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return self.header("Content-Type", "application/json")

    def timeout(self, ms: int) -> "Request":
        self.timeout_ms = ms
        return self

    def send(self) -> "Response":
        return send(self)


@dataclass
class Response:
    """An HTTP response, whatever its status."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first header with this name (case-insensitive)."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON, or `Internal` saying what came instead."""
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise Internal(
                f"the system answered {self.status} with a body that is not JSON: {e}"
            ) from None

    def retry_after_ms(self) -> int | None:
        """`Retry-After` in milliseconds (seconds or an HTTP date)."""
        value = self.header("retry-after")
        if value is None:
            return None
        value = value.strip()
        if value.isdigit():
            return int(value) * 1000
        try:
            from datetime import datetime, timezone

            when = parsedate_to_datetime(value)
            delta = (when - datetime.now(timezone.utc)).total_seconds()
            return max(0, int(delta * 1000))
        except (TypeError, ValueError):
            return None

    def error_for_status(self) -> "Response":
        """Itself for 2xx; otherwise raises the class the status implies:
        401 → Auth, 403 → AccessDenied, 429 → RateLimited (Retry-After, else
        1 s), 408/5xx → Transient, any other 4xx → Rejected, else Internal."""
        if 200 <= self.status < 300:
            return self
        raise status_error(self)


def status_error(response: Response) -> PluginError:
    """The error for a non-2xx response (see `Response.error_for_status`)."""
    excerpt_text = excerpt(response.body)
    msg = f"HTTP {response.status}: {excerpt_text}" if excerpt_text else f"HTTP {response.status} (empty body)"
    status = response.status
    if status == 401:
        return Auth(msg)
    if status == 403:
        return AccessDenied(msg)
    if status == 429:
        retry = response.retry_after_ms()
        return RateLimited(1000 if retry is None else retry)
    if status == 408 or 500 <= status <= 599:
        return Transient(msg)
    if 400 <= status <= 499:
        return Rejected(msg)
    return Internal(msg)


_MASK_AFTER = {"bearer", "basic", "token"}
_SECRET_KEYS = {"token", "access_token", "api_key", "apikey", "password", "secret", "authorization"}


def excerpt(body: bytes) -> str | None:
    """A short single-line excerpt of an error body, with credential-looking
    words masked (the host already redacted the secrets it sent)."""
    words = body.decode("utf-8", errors="replace").split()
    if not words:
        return None
    out: list[str] = []
    mask_next = False
    for word in words:
        if mask_next:
            out.append("***")
            mask_next = False
            continue
        bare = word.strip("\"'.,;:()[]{}").lower()
        if bare in _MASK_AFTER:
            mask_next = True
            out.append(word)
            continue
        out.append(_mask_pair(word))
    text = " ".join(out)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _mask_pair(word: str) -> str:
    for sep in ("=", ":"):
        key, found, value = word.partition(sep)
        if found and value and key.strip("\"'{,").lower() in _SECRET_KEYS:
            return f"{key}{sep}***"
    return word


def refusal_error(refusal: _host.HttpRefusal) -> PluginError:
    """The plugin error for a request the host did not answer."""
    kind, detail = refusal.kind, refusal.detail
    if kind in ("origin-not-allowed", "address-not-allowed", "redirect-not-allowed", "secret-not-allowed"):
        return AccessDenied(f"{kind.replace('-', ' ')}: {detail}")
    if kind == "budget-exhausted":
        return RateLimited(int(detail or 0))
    if kind == "needs-authorization":
        return Auth(f"the connection needs an admin to authorize it again: {detail}")
    if kind in ("timeout", "connection-failed"):
        return Transient(f"request {kind.replace('-', ' ')}" + (f": {detail}" if detail else ""))
    if kind == "response-too-large":
        return Internal(f"the response is larger than the host's {detail}-byte cap")
    return Internal(f"invalid request: {detail}" if kind == "invalid-request" else f"{kind}: {detail}")


def send(request: Request) -> Response:
    """Send through the host. A host refusal raises its plugin error
    (`AccessDenied`, `RateLimited`, `Auth`, `Transient`, `Internal`); any
    HTTP status is returned (see `Response.error_for_status`)."""
    try:
        return _host.current().send(request)
    except _host.HttpRefusal as refusal:
        raise refusal_error(refusal) from None
