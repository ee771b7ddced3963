"""A small JSON Schema validator for the subset plugin config schemas use
(type, properties, required, additionalProperties, enum, minimum/maximum,
minLength, pattern, items, default, format uri/email), and config parsing
that names the offending field in an `InvalidConfig`."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from .errors import InvalidConfig

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),
    "number": (int, float),
}

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]+[^\s]*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, ()))


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Every problem of `value` against `schema`, as `field: problem` lines
    (`""` path for the whole value). Unknown keywords are ignored."""
    where = path or "(the config)"
    problems: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(value, n) for n in names):
            return [f"{where}: must be {' or '.join(names)}, not {_describe(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        options = ", ".join(json.dumps(o) for o in schema["enum"])
        problems.append(f"{where}: must be one of {options}, not {json.dumps(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: must be at least {schema['minimum']}, not {value}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: must be at most {schema['maximum']}, not {value}")
    if isinstance(value, str):
        problems.extend(_string_problems(value, schema, where))
    if isinstance(value, dict):
        problems.extend(_object_problems(value, schema, path))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems.extend(errors(item, schema["items"], _child(path, i)))
    return problems


def _string_problems(value: str, schema: dict[str, Any], where: str) -> list[str]:
    problems = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{where}: must have at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{where}: must have at most {schema['maxLength']} characters")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        problems.append(f"{where}: {json.dumps(value)} does not match the pattern {schema['pattern']}")
    fmt = schema.get("format")
    if fmt == "uri" and not _URI.match(value):
        problems.append(f"{where}: {json.dumps(value)} is not an absolute URI (e.g. http://127.0.0.1:5000)")
    if fmt == "email" and not _EMAIL.match(value):
        problems.append(f"{where}: {json.dumps(value)} is not an e-mail address")
    return problems


def _object_problems(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    problems = []
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            problems.append(f"{_child(path, name)}: is required")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            problems.extend(errors(item, properties[name], _child(path, name)))
        elif extra is False:
            known = ", ".join(sorted(properties)) or "none"
            problems.append(f"{_child(path, name)}: is not a known field (known: {known})")
        elif isinstance(extra, dict):
            problems.extend(errors(item, extra, _child(path, name)))
    return problems


def _describe(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return f"{name} {json.dumps(value)}" if name not in ("array", "object") else f"an {name}"
    return type(value).__name__


def with_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """`value` with the `default` of every absent property filled in."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name, prop in schema.get("properties", {}).items():
        if not isinstance(prop, dict):
            continue
        if name not in out and "default" in prop:
            out[name] = copy.deepcopy(prop["default"])
        if name in out:
            out[name] = with_defaults(out[name], prop)
    return out


def parse_config(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The config JSON validated against `schema`, defaults filled in; or
    `InvalidConfig` listing every problem by field path."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise InvalidConfig(f"the config is not JSON: {e}") from None
    problems = errors(value, schema)
    if problems:
        raise InvalidConfig("invalid config: " + "; ".join(problems))
    filled = with_defaults(value, schema)
    if not isinstance(filled, dict):
        raise InvalidConfig("invalid config: (the config): must be an object")
    return filled
