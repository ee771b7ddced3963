"""{{name}}: a Nexo connector for a REST contacts API. One stream,
`contacts`, read incrementally by `updated_at` and written back with
idempotent creates, updates and deletes.

The API (bearer token, the `api_token` secret):
- `GET /api/contacts?updated_after=T&limit=N&page_token=P` answers
  `{"results": [...], "next_page_token": "..." | null}`; a result is a
  contact or a tombstone `{"id", "deleted": true, "updated_at"}`, ordered by
  (`updated_at`, `id`), `updated_after` inclusive;
- `POST /api/contacts` with an `Idempotency-Key` header: 201 with the new
  contact, or 200 with the contact already created for that key;
- `PUT /api/contacts/{id}` replaces, `DELETE /api/contacts/{id}` deletes
  (404 when unknown).

Errors: `error_for_status` raises the class an answer implies — 401 → Auth,
429 → RateLimited (from `Retry-After`), 5xx → Transient (the host retries),
other 4xx → Rejected, which fails that record alone in `write`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from nexo_sdk import (
    Connector,
    Created,
    Cursor,
    Deleted,
    InvalidConfig,
    Operation,
    Page,
    Record,
    Rejected,
    Request,
    SecretRequirement,
    StreamInfo,
    Updated,
    WriteRecord,
)
from nexo_sdk.errors import Internal

STREAM = "contacts"
ANY = ["https://*:*", "http://*:*"]

CONTACT_SCHEMA = (
    '{"type":"object","required":["id","email","updated_at"],'
    '"properties":{"id":{"type":"string"},"email":{"type":"string"},"updated_at":{"type":"string"}}}'
)


class Plugin(Connector):
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["base_url"],
        "properties": {
            "base_url": {"type": "string", "description": "Base URL of the API, e.g. https://crm.example.com"},
            "page_size": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 100},
        },
    }
    streams = [StreamInfo(STREAM, CONTACT_SCHEMA, ["id"], "updated_at", can_read=True, can_write=True)]
    # The API's host is the customer's: declare any origin, the admin's
    # grant names the real one.
    http_origins = ANY
    secrets = [SecretRequirement("api_token", "API token of the contacts API", ANY)]

    def check(self, config: dict[str, Any]) -> None:
        request(config, Request.get, "/api/contacts").query("limit", "1").send().error_for_status()

    def read(self, config: dict[str, Any], stream: str, state: str | None) -> Page:
        self.stream(stream)
        # The state is the last (updated_at, id) seen plus the page token of
        # a listing in progress: a read resumes where the last page ended.
        cursor = Cursor.from_state(state)
        start = cursor.query_value()
        page = (
            request(config, Request.get, "/api/contacts")
            .query("updated_after", start or "")
            .query("limit", str(config.get("page_size", 100)))
            .query("page_token", cursor.page_token or "")
            .send()
            .error_for_status()
            .json()
        )
        seen = Cursor.from_state(state)
        records = []
        for row in page.get("results", []):
            id, updated_at = row.get("id"), row.get("updated_at")
            if not isinstance(id, str) or not isinstance(updated_at, str):
                raise Internal("the API sent a contact without `id` or `updated_at`")
            # `updated_after` is inclusive: skip what the last page ended on.
            if seen.is_seen(updated_at, id):
                continue
            cursor.observe(updated_at, id)
            if row.get("deleted") is True:
                records.append(Record(stream, id, "{}", Operation.DELETE, updated_at))
            else:
                records.append(Record.of(stream, id, row, updated_at))
        token = page.get("next_page_token")
        cursor.set_page(token, start)
        return Page(records, cursor.to_state(), has_more=token is not None)

    def write_record(self, config: dict[str, Any], stream: str, record: WriteRecord) -> Any:
        self.stream(stream)
        if record.operation is Operation.DELETE:
            if not record.id:
                raise Rejected("a delete needs the contact's id and this record has none")
            response = request(config, Request.delete, f"/api/contacts/{segment(record.id)}").send()
            # Already gone is what a delete wants: a retried delete succeeds.
            if response.status != 404:
                response.error_for_status()
            return Deleted(record.id)
        body = record.json()
        if not isinstance(body, dict):
            raise Rejected(f"contact {record.id}: the payload is not a JSON object")
        body = {k: v for k, v in body.items() if k not in ("id", "updated_at")}
        if record.id:
            put(config, record.id, body)
            return Updated(record.id)
        # The host gives every create a key that stays the same when it
        # retries: a create whose answer was lost makes no duplicate.
        response = (
            request(config, Request.post, "/api/contacts")
            .header("Idempotency-Key", record.idempotency_key)
            .json(body)
            .send()
            .error_for_status()
        )
        created = response.json()
        if response.status == 200:
            # Created by an earlier attempt: bring it up to date.
            put(config, created["id"], body)
            return Updated(created["id"])
        return Created(created["id"])


def request(config: dict[str, Any], new: Any, path: str) -> Request:
    """A request to `path`, with the `api_token` secret (the host puts the
    value in; the plugin never sees it)."""
    base = str(config.get("base_url", "")).rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise InvalidConfig(f"field `base_url`: {config.get('base_url')!r} is not an http(s) URL")
    return new(base + path).bearer_secret("api_token")


def put(config: dict[str, Any], id: str, body: dict[str, Any]) -> None:
    request(config, Request.put, f"/api/contacts/{segment(id)}").json(body).send().error_for_status()


def segment(id: str) -> str:
    """`id` as one URL path segment, so that no id reaches another endpoint."""
    if id in ("", ".", ".."):
        raise Rejected(f"{id!r} is not a contact id")
    return quote(id, safe="")
