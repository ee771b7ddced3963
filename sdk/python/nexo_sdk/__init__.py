"""Nexo's Python SDK: write connectors and mappers in Python and build them
into WebAssembly components (`python -m nexo_sdk.build PLUGIN_DIR -o X.wasm`).

The plugin's `app.py` subclasses `Connector` or `Mapper` and exports it:

    Operations = export_connector(MyConnector)   # a connector
    Mapping = export_mapper(MyMapper)            # a mapper

Everything here runs without the generated bindings (and so in unit tests);
only `export_connector`/`export_mapper` need them, at build time.
"""

from __future__ import annotations

from typing import Any

#: Versioned with the contract: 1.1.x builds against nexo:connector 1.1.0.
__version__ = "1.1.0"
#: The `nexo:connector` contract version this SDK targets.
WIT_VERSION = "1.1.0"

from . import http, kv, log  # noqa: E402
from .connector import Connector  # noqa: E402
from .errors import (  # noqa: E402
    AccessDenied,
    Auth,
    Internal,
    InvalidConfig,
    PluginError,
    RateLimited,
    Rejected,
    Transient,
)
from .http import Request, Response, secret  # noqa: E402
from .mapper import Mapper  # noqa: E402
from .model import Contact, Invoice  # noqa: E402
from .records import (  # noqa: E402
    Created,
    Deleted,
    Failed,
    Mapped,
    Operation,
    Record,
    Unchanged,
    Updated,
    WriteRecord,
    WriteResult,
)
from .spec import Page, SecretRequirement, StreamInfo  # noqa: E402
from .state import Cursor  # noqa: E402


def export_connector(cls: type[Connector]) -> type:
    """The `Operations` class componentize-py exports, over `cls`."""
    from ._bindings import operations_for

    return operations_for(cls)


def export_mapper(cls: type[Mapper]) -> type:
    """The `Mapping` class componentize-py exports, over `cls`."""
    from ._bindings import mapping_for

    return mapping_for(cls)


__all__: list[Any] = [
    "AccessDenied", "Auth", "Connector", "Contact", "Created", "Cursor", "Deleted", "Failed",
    "Internal", "InvalidConfig", "Invoice", "Mapped", "Mapper", "Operation", "Page", "PluginError",
    "RateLimited", "Record", "Rejected", "Request", "Response", "SecretRequirement", "StreamInfo",
    "Transient", "Unchanged", "Updated", "WriteRecord", "WriteResult", "export_connector",
    "export_mapper", "http", "kv", "log", "secret",
]
