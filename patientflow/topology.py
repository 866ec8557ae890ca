"""Which processes make up patientflow, in start order, and where each one's app and migrations live."""

from dataclasses import dataclass
from pathlib import Path

from kit.config import SERVICE_PORTS

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Component:
    name: str
    app: str  # uvicorn factory path
    port: int
    migrations: Path | None  # its Alembic directory; None: no database of its own


SERVICES = [
    Component(
        name, f"services.{name}.app:create_app", SERVICE_PORTS[name], ROOT / "services" / name / "migrations"
    )
    # The event hub reads the other four services' feeds, so it starts after them.
    for name in ("registration", "triage", "results", "billing", "events")
]
GATEWAY = Component(
    "gateway", "gateway.app:create_app", SERVICE_PORTS["gateway"], ROOT / "gateway" / "migrations"
)
COMPONENTS = [*SERVICES, GATEWAY]
