"""Examples synthesized from a JSON schema, for operations whose service declared none.

An example the service declared (`examples`, `example`, `default`, `const`) always wins; otherwise
formats, enums, patterns and bounds give a value that validates, so an integrator can send it as is.
"""

import re
from collections.abc import Callable, Mapping
from typing import Any

Schema = Mapping[str, Any]
Resolve = Callable[[str], Schema]

MAX_DEPTH = 12  # a disruption lists appointments, each with its offer: 9 levels of $ref and nesting
_FORMATS = {
    "date-time": "2026-03-02T08:30:00+08:00",
    "date": "2026-03-02",
    "time": "08:30:00",
    "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "uri": "https://his.example.org/patientflow/webhook",
    "email": "integration@example.org",
    "duration": "PT15M",
}
# Tried in order for a `pattern`: the first that matches (and fits the length bounds) is used.
_PATTERN_CANDIDATES = ("internal", "example", "13800138000", "3", "A1", "250101015", "patient.registered")


def schema_example(schema: Schema, resolve: Resolve, *, name: str = "", request: bool = False) -> Any:
    """A value valid for `schema`; for a request, optional fields without an example are left out."""
    return _example(schema, resolve, name, request, 0)


def _declared(schema: Schema) -> tuple[bool, Any]:
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return True, schema["examples"][0]
    for key in ("example", "const"):
        if key in schema:
            return True, schema[key]
    if schema.get("default") is not None:
        return True, schema["default"]
    return False, None


def _example(schema: Schema, resolve: Resolve, name: str, request: bool, depth: int) -> Any:
    found, value = _declared(schema)
    if found:
        return value
    if "$ref" in schema:
        return _example(resolve(schema["$ref"]), resolve, name, request, depth + 1)
    if depth > MAX_DEPTH:
        return None
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            options = [s for s in schema[combinator] if s.get("type") != "null"] or schema[combinator]
            return _example(options[0], resolve, name, request, depth + 1)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part_value = _example(part, resolve, name, request, depth + 1)
            if isinstance(part_value, dict):
                merged |= part_value
        return merged
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return _object(schema, resolve, request, depth)
    if kind == "array":
        item = _example(schema.get("items", {}), resolve, name, request, depth + 1)
        return [item] * max(int(schema.get("minItems", 1)), 1)
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema, name)


def _object(schema: Schema, resolve: Resolve, request: bool, depth: int) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    value: dict[str, Any] = {}
    for prop, prop_schema in schema.get("properties", {}).items():
        exemplified = "examples" in prop_schema or "example" in prop_schema
        if request and prop not in required and not exemplified:
            continue  # a minimal request: required fields, and optional ones the service exemplified
        value[prop] = _example(prop_schema, resolve, prop, request, depth + 1)
    return value


def _number(schema: Schema, kind: str) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low += 1
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = max(low, 1)
    if high is not None:
        value = min(value, high - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0))
    return int(value) if kind == "integer" else float(value)


def _string(schema: Schema, name: str) -> str:
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    if name == "id" or name.endswith("_id"):
        return _FORMATS["uuid"]
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    candidates = _PATTERN_CANDIDATES if "pattern" in schema else ("string",)
    for candidate in candidates:
        fits = len(candidate) >= low and (high is None or len(candidate) <= high)
        if fits and ("pattern" not in schema or re.search(schema["pattern"], candidate)):
            return candidate
    return ("x" * max(low, 1))[: high or None]
