"""Development API keys: generated once per data directory, printed by `patientflow up`.

The gateway only ever sees the SHA-256 of a key (`gateway-keys.json`); the plaintext stays in
`dev-keys.json` beside it, for a developer's curl. Production keys are not made here.
"""

import hashlib
import json
import os
import secrets
from pathlib import Path

DEV_CLIENTS: dict[str, tuple[str, list[str]]] = {
    "his-dev": (
        "his",
        [
            "registration:read", "registration:write", "triage:read", "triage:write",
            "orders:write", "results:read", "results:write", "billing:read", "billing:write",
            "events:read", "events:subscribe", "directory:read", "schedules:write",
            "appointments:write", "checkin:write", "stats:read", "metrics:read", "catalogue:write",
            "critical:ack",
        ],
    ),
    # Books follow-ups (复诊预约) at the end of a visit; acknowledges critical values (危急值).
    "doctor-dev": (
        "doctor",
        [
            "registration:read", "triage:read", "triage:write", "orders:write", "results:read",
            "directory:read", "appointments:write", "critical:ack",
        ],
    ),
    "nurse-dev": (  # the registration desk too: bookings, walk-ins, check-in
        "nurse",
        [
            "registration:read", "registration:write", "triage:read", "triage:write", "directory:read",
            "appointments:write", "checkin:write",
        ],
    ),
    "lab-dev": ("lis", ["results:read", "results:write", "directory:read"]),
    "cashier-dev": ("cashier", ["registration:read", "billing:read", "billing:write", "directory:read"]),
    "admin-dev": (
        "admin",
        [
            "registration:read", "registration:write", "triage:read", "triage:write", "orders:write",
            "results:read", "results:write", "billing:read", "billing:write", "audit:read",
            "metrics:read", "admin:clients", "events:read", "events:subscribe", "board:read",
            "directory:read", "schedules:write", "appointments:write", "checkin:write",
            "stats:read", "catalogue:write",
        ],
    ),
    # Act for one patient at a time (a patient token from POST /v1/patient-sessions on every call).
    "app-dev": (
        "app",
        [
            "registration:read", "triage:read", "results:read", "billing:read", "events:read",
            "directory:read", "appointments:write", "checkin:write",
            "billing:write",  # its own patient's booking fee only: the one billing write it is bound to
        ],
    ),
    # Prints results and checks the patient in for an appointment; reads its own patient's appointments,
    # and (triage:read) its own patient's tickets, place in line and wait band.
    "kiosk-dev": (
        "kiosk", ["results:read", "directory:read", "registration:read", "checkin:write", "triage:read"]
    ),
    # The telephone lookup line (电话查询): reads its caller's released reports, proven like an app.
    "phone-dev": ("phone", ["results:read", "directory:read"]),
    # The waiting-room screen: the board projection of a queue only (numbers, masked names, counters).
    "board-dev": ("board", ["board:read", "directory:read"]),
}  # fmt: skip


def ensure_dev_keys(data_dir: Path) -> tuple[dict[str, str], Path]:
    """Plaintext keys by client, and the hashed keys file for the gateway (both reused across runs)."""
    plain_file, hashed_file = data_dir / "dev-keys.json", data_dir / "gateway-keys.json"
    keys: dict[str, str] = json.loads(plain_file.read_text()) if plain_file.exists() else {}
    for client in DEV_CLIENTS:
        keys.setdefault(client, f"pf_dev_{secrets.token_urlsafe(24)}")
    plain_file.write_text(json.dumps(keys, indent=2))
    plain_file.chmod(0o600)
    hashed = [
        {
            "client": client,
            "kind": DEV_CLIENTS[client][0],
            "sha256": hashlib.sha256(key.encode()).hexdigest(),
            "scopes": DEV_CLIENTS[client][1],
        }
        for client, key in keys.items()
        if client in DEV_CLIENTS
    ]
    hashed_file.write_text(json.dumps({"keys": hashed}, indent=2))
    return {c: keys[c] for c in DEV_CLIENTS}, hashed_file


DEV_INTERNAL_SECRET_FILE = "dev-internal-secret"


def ensure_dev_internal_secret(data_dir: Path) -> str:
    """The secret `patientflow up` signs internal tokens with, kept (mode 0600) in the data directory so
    the CLI beside it (`patientflow keys revoke`) can talk to the running event hub; reused across runs."""
    path = data_dir / DEV_INTERNAL_SECRET_FILE
    secret = read_dev_internal_secret(data_dir)
    if secret is None:
        secret = secrets.token_urlsafe(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
        with os.fdopen(descriptor, "w") as file:
            file.write(secret)
    path.chmod(0o600)
    return secret


def read_dev_internal_secret(data_dir: Path) -> str | None:
    """The secret a development `patientflow up` left in `data_dir`, if any."""
    path = data_dir / DEV_INTERNAL_SECRET_FILE
    secret = path.read_text().strip() if path.is_file() else ""
    return secret or None


DEV_URLS_FILE = "dev-urls.json"


def write_dev_urls(data_dir: Path, urls: dict[str, str]) -> None:
    """Where each process of this data directory's `patientflow up` listens (`--base-port` moves them), so
    the CLI beside it (`patientflow keys revoke`) finds the running event hub without being told."""
    (data_dir / DEV_URLS_FILE).write_text(json.dumps(urls, indent=2))


def read_dev_url(data_dir: Path, name: str) -> str | None:
    """The URL the last `patientflow up` in `data_dir` gave `name`, if it recorded one."""
    try:
        url = json.loads((data_dir / DEV_URLS_FILE).read_text()).get(name)
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) and url else None
