"""Cursor state for incremental reads, the same JSON as the Rust SDK's
`Cursor`: the highest cursor value, the ids seen at it (records sharing a
timestamp are neither skipped nor read twice) and the system's page token."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import Internal


@dataclass
class Cursor:
    value: str | None = None
    ids_at_value: list[str] = field(default_factory=list)
    page_token: str | None = None
    #: The cursor value a paged query started from: every page of it must
    #: repeat the same query, or offsets would skip records.
    paging_from: str | None = None

    @classmethod
    def from_state(cls, state: str | None) -> "Cursor":
        """The state the host passed to `read` (`None`: from the start)."""
        if not state:
            return cls()
        try:
            data = json.loads(state)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return cls(
                value=data.get("value"),
                ids_at_value=list(data.get("ids_at_value", [])),
                page_token=data.get("page_token"),
                paging_from=data.get("paging_from"),
            )
        except (ValueError, TypeError) as e:
            raise Internal(f"the saved read state is not a nexo-sdk cursor: {e}") from None

    def to_state(self) -> str:
        data: dict[str, object] = {}
        if self.value is not None:
            data["value"] = self.value
        if self.ids_at_value:
            data["ids_at_value"] = self.ids_at_value
        if self.page_token is not None:
            data["page_token"] = self.page_token
        if self.paging_from is not None:
            data["paging_from"] = self.paging_from
        return json.dumps(data, separators=(",", ":"))

    def query_value(self) -> str | None:
        """Where to query from: the paged query's start while paging, else
        the committed cursor value."""
        return self.paging_from if self.page_token is not None else self.value

    def set_page(self, token: str | None, queried_from: str | None) -> None:
        """After a page fetched from `queried_from`: a token continues the
        same query; `None` ends it."""
        self.paging_from = queried_from if token is not None else None
        self.page_token = token

    def is_seen(self, value: str, id: str) -> bool:
        """Older than the cursor, or at it and already returned. Values
        compare as strings: use sortable forms (RFC 3339 UTC)."""
        if self.value is None:
            return False
        if value < self.value:
            return True
        return value == self.value and id in self.ids_at_value

    def observe(self, value: str, id: str) -> None:
        """Note that a record with this value and id was returned."""
        if self.value is not None and value < self.value:
            return
        if value == self.value:
            if id not in self.ids_at_value:
                self.ids_at_value.append(id)
            return
        self.value = value
        self.ids_at_value = [id]
