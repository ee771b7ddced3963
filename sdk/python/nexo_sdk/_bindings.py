"""The one module that knows componentize-py's generated bindings
(`wit_world`): it implements `host.Host` over the imports, converts the SDK's
records and errors to the WIT types, and makes the `Operations`/`Mapping`
export classes componentize-py looks for in the plugin's `app` module.

Only importable inside a component build (where `wit_world` exists).
"""

from __future__ import annotations

import importlib
import re
import traceback
from typing import Any, Callable, TypeVar

from componentize_py_types import Err
from wit_world.imports import log as wit_log

from . import host as _host
from . import log as _log
from .connector import Connector
from .errors import PluginError, from_exception
from .http import Request, Response
from .mapper import Mapper
from .records import (
    Created,
    Deleted,
    Failed,
    Mapped,
    MapOutcome,
    Operation,
    Record,
    Unchanged,
    Updated,
    WriteRecord,
    WriteResult,
)
from .spec import Page, StreamInfo

try:  # only the connector world imports these
    from wit_world.imports import http as wit_http
    from wit_world.imports import kv as wit_kv
    from wit_world.imports import secrets as wit_secrets
except ImportError:  # a mapper: no network, no storage
    wit_http = wit_kv = wit_secrets = None  # type: ignore[assignment]

T = TypeVar("T")


class _WitTypes:
    """The generated WIT types by name. componentize-py does not put every
    type in `wit_world.imports.types`: inside a component build, types only
    an export uses (1.1's `map-outcome`) land in that export's module
    (`wit_world.exports.mapping`), while `componentize-py bindings` puts them
    all in `types`. So look in each, once per name."""

    MODULES = ("wit_world.imports.types", "wit_world.exports.mapping", "wit_world.exports.operations")

    def __init__(self) -> None:
        self._found: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._found:
            self._found[name] = self._lookup(name)
        return self._found[name]

    def _lookup(self, name: str) -> Any:
        for module_name in self.MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(
            f"the generated bindings have no {name} (looked in {', '.join(self.MODULES)}); "
            "build the plugin with `python -m nexo_sdk.build` (componentize-py 0.25.1)"
        )


wit = _WitTypes()

_LEVELS = {
    "trace": wit_log.Level.TRACE,
    "debug": wit_log.Level.DEBUG,
    "info": wit_log.Level.INFO,
    "warn": wit_log.Level.WARN,
    "error": wit_log.Level.ERROR,
}


def _case(value: object, prefix: str) -> str:
    """`HttpError_OriginNotAllowed` → `origin-not-allowed`."""
    name = type(value).__name__.removeprefix(prefix)
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class WitHost:
    """`host.Host` over the generated imports."""

    def log(self, level: str, message: str) -> None:
        wit_log.log(_LEVELS[level], message)

    def send(self, request: Request) -> Response:
        if wit_http is None:
            raise _host.HttpRefusal("origin-not-allowed", "a mapper has no network")
        req = wit_http.Request(
            wit_http.Method[request.method],
            request.url,
            list(request.headers),
            request.basic_auth,
            request.body,
            request.timeout_ms,
        )
        try:
            r = wit_http.send(req)
        except Err as e:
            raise _host.HttpRefusal(_case(e.value, "HttpError_"), getattr(e.value, "value", None)) from None
        # 1.1 hands a UTF-8 body over as text, anything else as bytes.
        body = r.body.value
        return Response(r.status, list(r.headers), body.encode() if isinstance(body, str) else bytes(body))

    def secret_is_set(self, name: str) -> bool:
        return wit_secrets is not None and wit_secrets.is_set(name)

    def _kv(self, call: Callable[[], T]) -> T:
        if wit_kv is None:
            raise _host.KvRefusal("not-granted")
        try:
            return call()
        except Err as e:
            raise _host.KvRefusal(_case(e.value, "KvError_"), getattr(e.value, "value", None)) from None

    def kv_get(self, key: str) -> bytes | None:
        value = self._kv(lambda: wit_kv.get(key))
        return None if value is None else bytes(value)

    def kv_set(self, key: str, value: bytes) -> None:
        self._kv(lambda: wit_kv.set(key, value))

    def kv_delete(self, key: str) -> None:
        self._kv(lambda: wit_kv.delete(key))

    def kv_list(self, prefix: str) -> list[str]:
        return list(self._kv(lambda: wit_kv.list_keys(prefix)))


_host.set_host(WitHost())
_log.route_logging()


# --- conversions --------------------------------------------------------------

_ERRORS: dict[str, Callable[[Any], Any]] = {
    "invalid-config": wit.Error_InvalidConfig,
    "auth": wit.Error_Auth,
    "access-denied": wit.Error_AccessDenied,
    "rate-limited": wit.Error_RateLimited,
    "transient": wit.Error_Transient,
    "rejected": wit.Error_Rejected,
    "internal": wit.Error_Internal,
}


def wit_error(e: PluginError) -> Any:
    if e.case == "rate-limited":
        return wit.Error_RateLimited(getattr(e, "retry_after_ms", 1000))
    return _ERRORS[e.case](e.message)


def _operation(op: Any) -> Operation:
    return Operation.DELETE if op == wit.Operation.DELETE else Operation.UPSERT


def wit_record(r: Record) -> Any:
    op = wit.Operation.DELETE if r.operation is Operation.DELETE else wit.Operation.UPSERT
    return wit.Record(r.stream, r.id, op, r.payload, r.cursor)


def sdk_record(r: Any) -> Record:
    return Record(r.stream, r.id, r.payload, _operation(r.operation), r.cursor)


def wit_stream(s: StreamInfo) -> Any:
    return wit.StreamInfo(s.name, s.json_schema, list(s.primary_key), s.cursor_field, s.can_read, s.can_write)


def wit_write_result(r: WriteResult) -> Any:
    o = r.outcome
    if isinstance(o, Failed):
        outcome: Any = wit.WriteOutcome_Failed(wit_error(o.error))
    elif isinstance(o, Created):
        outcome = wit.WriteOutcome_Created(o.id)
    elif isinstance(o, Updated):
        outcome = wit.WriteOutcome_Updated(o.id)
    elif isinstance(o, Unchanged):
        outcome = wit.WriteOutcome_Unchanged(o.id)
    elif isinstance(o, Deleted):
        outcome = wit.WriteOutcome_Deleted(o.id)
    else:
        raise TypeError(f"a write outcome must be Created, Updated, Unchanged, Deleted or Failed, not {o!r}")
    return wit.WriteResult(r.id, outcome)


def wit_map_outcome(o: MapOutcome) -> Any:
    if isinstance(o, Failed):
        return wit.MapOutcome_Failed(wit_error(o.error))
    if isinstance(o, Mapped):
        return wit.MapOutcome_Mapped([wit_record(r) for r in o.records])
    raise TypeError(f"a map outcome must be Mapped or Failed, not {o!r}")


def guarded(what: str, call: Callable[[], T]) -> T:
    """Run an export: a `PluginError` ends it with its case; anything else
    with `internal` (traceback to the plugin log), never a trap."""
    try:
        return call()
    except PluginError as e:
        raise Err(wit_error(e)) from None
    except Exception as e:  # noqa: BLE001 - the boundary must not trap
        try:
            _log.error(f"{what} failed: {''.join(traceback.format_exception(e)).strip()}")
        except Exception:  # noqa: BLE001 - a log the host refuses must not hide the error
            pass
        raise Err(wit_error(from_exception(e))) from None


# --- exports ------------------------------------------------------------------


def operations_for(cls: type[Connector]) -> type:
    from wit_world import exports

    plugin = cls()

    class Operations(exports.Operations):
        def spec(self) -> Any:
            caps = wit.Capabilities(
                list(plugin.http_origins),
                [wit.SecretRequirement(s.name, s.description, list(s.origins)) for s in plugin.secrets],
                plugin.kv_bytes,
            )
            schema = _json_text(plugin.config_schema)
            return wit.PluginSpec(plugin.sdk_version(), schema, plugin.stream_names(), caps)

        def check(self, config: str) -> None:
            guarded("check", lambda: plugin.check(plugin.parse_config(config)))

        def discover(self, config: str) -> list[Any]:
            streams = guarded("discover", lambda: plugin.discover(plugin.parse_config(config)))
            return [wit_stream(s) for s in streams]

        def read(self, config: str, stream: str, state: str | None) -> Any:
            def call() -> Any:
                page: Page = plugin.read(plugin.parse_config(config), stream, state)
                return wit.Page([wit_record(r) for r in page.records], page.state, page.has_more)

            return guarded(f"read({stream})", call)

        def write(self, config: str, stream: str, batch: list[Any]) -> list[Any]:
            def call() -> list[Any]:
                records = [
                    WriteRecord(r.stream, r.id, r.payload, r.idempotency_key, _operation(r.operation)) for r in batch
                ]
                results = plugin.write(plugin.parse_config(config), stream, records)
                if len(results) != len(records):
                    raise RuntimeError(f"write returned {len(results)} results for {len(records)} records")
                return [wit_write_result(r) for r in results]

            return guarded(f"write({stream}, {len(batch)} records)", call)

    return Operations


def mapping_for(cls: type[Mapper]) -> type:
    from wit_world import exports

    plugin = cls()

    class Mapping(exports.Mapping):
        def map(self, config: str, batch: list[Any]) -> list[Any]:
            def call() -> list[Any]:
                outcomes = plugin.map_batch(plugin.parse_config(config), [sdk_record(r) for r in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"map returned {len(outcomes)} outcomes for {len(batch)} records")
                return [wit_map_outcome(o) for o in outcomes]

            return guarded(f"map({len(batch)} records)", call)

    return Mapping


def _json_text(schema: dict[str, Any]) -> str:
    import json

    return json.dumps(schema, separators=(",", ":"))
