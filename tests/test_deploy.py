"""The deployment files: compose parses, runs every component on PostgreSQL, and fails fast on secrets.

There is no Docker engine on the CI machines, so the image itself is not built here; what can be
checked without one is.
"""

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from gateway.keys import hash_key, read_seed_file
from patientflow.topology import COMPONENTS, ROOT

COMPOSE = ROOT / "docker-compose.yml"
REQUIRED_VARIABLES = {"POSTGRES_PASSWORD", "PATIENTFLOW_INTERNAL_SECRET", "GATEWAY_KEYS_FILE"}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_names_postgres_and_every_component() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres"} | {c.name for c in COMPONENTS}
    for component in COMPONENTS:
        service = services[component.name]
        assert service["command"] == [component.name]
        assert "healthcheck" in service, component.name
        assert service["environment"]["PATIENTFLOW_ENVIRONMENT"] == "production"
        assert service["environment"]["PATIENTFLOW_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_services_start_only_after_their_dependencies_are_healthy() -> None:
    services = compose()["services"]
    for component in COMPONENTS:
        conditions = {dep["condition"] for dep in services[component.name]["depends_on"].values()}
        assert conditions == {"service_healthy"}, component.name
    assert set(services["gateway"]["depends_on"]) == {c.name for c in COMPONENTS if c.name != "gateway"}


def test_missing_secrets_stop_compose_instead_of_running_with_defaults() -> None:
    text = COMPOSE.read_text()
    failing_fast = set(re.findall(r"\$\{(\w+):\?", text))
    assert failing_fast >= REQUIRED_VARIABLES
    assert not re.search(r"\$\{\w+:-", text), "no silent defaults for variables"


def test_dockerfile_copies_every_package_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / source).exists(), source
    for package in ("kit", "services", "gateway", "patientflow"):
        assert f"COPY {package} " in dockerfile
    assert '"patientflow", "serve"' in dockerfile


def test_every_service_ships_its_migrations_in_the_package() -> None:
    for component in COMPONENTS:
        if component.migrations is None:
            continue
        versions = list(Path(component.migrations, "versions").glob("*.py"))
        assert versions, f"{component.name} has no migrations"
        assert (component.migrations / "env.py").exists()


def test_the_readme_makes_a_keys_file_the_gateway_reads(tmp_path: Path) -> None:
    """`GATEWAY_KEYS_FILE`: the README's recipe writes a seed file holding only the admin key's hash."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("`GATEWAY_KEYS_FILE` is a path") :]
    [recipe] = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)[:1]
    script = f'set -euo pipefail\n{recipe}\necho "$ADMIN_KEY" > admin.key\necho "$GATEWAY_KEYS_FILE" > path\n'
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True, capture_output=True)
    key = (tmp_path / "admin.key").read_text().strip()
    assert Path((tmp_path / "path").read_text().strip()) == tmp_path / "gateway-keys.json"
    [entry] = read_seed_file(tmp_path / "gateway-keys.json")
    assert (entry.client, entry.kind, entry.sha256) == ("admin", "admin", hash_key(key))
    assert "admin:clients" in entry.scopes and key not in (tmp_path / "gateway-keys.json").read_text()
