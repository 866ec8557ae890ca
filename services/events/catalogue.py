"""The event catalogue: one versioned JSON schema per event type, `catalogue/<type>.v<N>.json`."""

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOGUE_DIR = Path(__file__).parent / "catalogue"
SCHEMA_FILE = re.compile(r"^(?P<type>[a-z_.]+)\.v(?P<version>\d+)\.json$")


@lru_cache
def load_catalogue(directory: Path = CATALOGUE_DIR) -> dict[tuple[str, int], dict[str, Any]]:
    """Every schema by (event type, version); read once, the files ship with the code."""
    schemas: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        name = SCHEMA_FILE.match(path.name)
        if name:
            schemas[(name["type"], int(name["version"]))] = json.loads(path.read_text(encoding="utf-8"))
    return schemas


def summaries() -> list[dict[str, Any]]:
    """One line per (type, version), oldest type first alphabetically."""
    return [
        {"type": event_type, "version": version, "id": schema.get("$id"), "title": schema.get("title"),
         "description": schema.get("description")}
        for (event_type, version), schema in sorted(load_catalogue().items())
    ]  # fmt: skip


def schema_of(event_type: str, version: int | None = None) -> dict[str, Any] | None:
    """The schema of a type at a version (the newest when None); None if the catalogue has none."""
    versions = {v: s for (t, v), s in load_catalogue().items() if t == event_type}
    if not versions:
        return None
    return versions.get(version if version is not None else max(versions))
