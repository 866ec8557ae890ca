"""Plain helpers for gateway tests: identity numbers, keys files, gateway settings."""

import json
import random
import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from gateway.config import GatewaySettings
from gateway.keys import hash_key
from kit.testing import TEST_SECRET, database_url_under_test

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


def random_id_number() -> str:
    """A valid 18-digit resident identity number (GB 11643 check character), random enough not to repeat."""
    birth = date(1940, 1, 1) + timedelta(days=random.randrange(30_000))
    body = f"110105{birth:%Y%m%d}{random.randrange(1000):03d}"
    total = sum(int(digit) * weight for digit, weight in zip(body, WEIGHTS, strict=True))
    return body + CHECK_CHARS[total % 11]


# Each gateway a test starts gets a database of its own (SQLite file, or PG schema dropped at the end).
_SCRATCH = tempfile.TemporaryDirectory(prefix="gateway-tests-")
CREATED_SCHEMAS: list[str] = []


def write_keys_file(path: Path, clients: dict[str, tuple[str, list[str]]], kind: str = "his") -> Path:
    """`clients`: name -> (plaintext key, scopes). Stores only the hashes, as production does."""
    entries = [
        {"client": name, "kind": kind, "sha256": hash_key(key), "scopes": scopes}
        for name, (key, scopes) in clients.items()
    ]
    path.write_text(json.dumps({"keys": entries}), encoding="utf-8")
    return path


def gateway_database(data_dir: Path | None = None) -> dict[str, Any]:
    """Settings values for a fresh, empty gateway database on the database under test."""
    data_dir = data_dir or Path(tempfile.mkdtemp(dir=_SCRATCH.name))
    url = database_url_under_test()
    if url is None:
        return {"data_dir": data_dir, "database_url": f"sqlite:///{data_dir / 'gateway.db'}"}
    schema = f"test_gateway_{uuid.uuid4().hex[:10]}"
    CREATED_SCHEMAS.append(schema)
    return {"data_dir": data_dir, "database_url": url, "database_schema": schema}


def gateway_settings(keys_file: Path | None, **overrides: Any) -> GatewaySettings:
    """A gateway on a database of its own, seeded from `keys_file`."""
    values: dict[str, Any] = {
        "environment": "test",
        "internal_secret": TEST_SECRET,
        "api_keys_file": keys_file,
    }
    if "database_url" not in overrides:
        values |= gateway_database(overrides.pop("data_dir", None))
    return GatewaySettings.model_validate(values | overrides)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
