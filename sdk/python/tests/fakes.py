"""A fake host for the SDK's unit tests: records logs, answers requests
from a table, keeps key-value pairs in a dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from nexo_sdk.host import HttpRefusal, KvRefusal
from nexo_sdk.http import Request, Response


@dataclass
class FakeHost:
    answer: Callable[[Request], Response] = lambda req: Response(200, [], b"{}")
    logs: list[tuple[str, str]] = field(default_factory=list)
    sent: list[Request] = field(default_factory=list)
    store: dict[str, bytes] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    kv_granted: bool = True

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def send(self, request: Request) -> Response:
        self.sent.append(request)
        return self.answer(request)

    def secret_is_set(self, name: str) -> bool:
        return name in self.secrets

    def _check(self) -> None:
        if not self.kv_granted:
            raise KvRefusal("not-granted")

    def kv_get(self, key: str) -> bytes | None:
        self._check()
        return self.store.get(key)

    def kv_set(self, key: str, value: bytes) -> None:
        self._check()
        self.store[key] = value

    def kv_delete(self, key: str) -> None:
        self._check()
        self.store.pop(key, None)

    def kv_list(self, prefix: str) -> list[str]:
        self._check()
        return sorted(k for k in self.store if k.startswith(prefix))


def refusing(kind: str, detail: str | int | None = None) -> Callable[[Request], Response]:
    def answer(_: Request) -> Response:
        raise HttpRefusal(kind, detail)

    return answer
