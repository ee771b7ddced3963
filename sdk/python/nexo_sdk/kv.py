"""Key-value storage private to this plugin and connection (declare its
size with `Connector.kv_bytes`)."""

from __future__ import annotations

from . import host as _host
from .errors import AccessDenied, Internal, PluginError, Transient


def _error(refusal: _host.KvRefusal) -> PluginError:
    if refusal.kind == "not-granted":
        return AccessDenied(
            "no key-value storage: the plugin declares none (kv_bytes) or the admin did not grant it"
        )
    if refusal.kind == "quota-exceeded":
        return AccessDenied(f"key-value quota of {refusal.detail} bytes exceeded")
    if refusal.kind == "storage":
        return Transient(f"key-value storage: {refusal.detail}")
    return Internal(f"key-value: {refusal.detail}")


def get(key: str) -> bytes | None:
    try:
        return _host.current().kv_get(key)
    except _host.KvRefusal as r:
        raise _error(r) from None


def set(key: str, value: bytes | str) -> None:  # noqa: A001 - mirrors the WIT name
    data = value.encode() if isinstance(value, str) else value
    try:
        _host.current().kv_set(key, data)
    except _host.KvRefusal as r:
        raise _error(r) from None


def delete(key: str) -> None:
    try:
        _host.current().kv_delete(key)
    except _host.KvRefusal as r:
        raise _error(r) from None


def list_keys(prefix: str = "") -> list[str]:
    try:
        return _host.current().kv_list(prefix)
    except _host.KvRefusal as r:
        raise _error(r) from None
