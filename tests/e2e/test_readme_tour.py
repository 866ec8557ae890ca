"""The README's tour, pasted as written: its ```sh blocks run, in order, in one bash against the system.

Only what differs from a developer's fresh machine is changed: the gateway URL the tour sets (`GW=`)
points at the test system's port; the tour runs in a folder whose `data` (where `./run up` keeps the
keys) and `.venv` are the test system's and the repository's; the command-line block gets the database
the test system uses (not the event hub's moved port: the CLI finds it in `data`, as after
`./run up --base-port`); and the tour's identity numbers are replaced by fresh ones (the shared test
system may hold the README's example patients already: other tests post the API's examples). Bash runs
with `-euo pipefail`, so every command must exit 0, and every curl in the tour uses `--fail-with-body`,
so every answer must be a 2xx. A failure names the block. When a block of the tour changes, this test
needs no change unless the tour needs a new variable from the environment.
"""

import os
import re
import subprocess
from pathlib import Path

from patientflow.supervisor import System
from tests.e2e.clients import random_id_number

ROOT = Path(__file__).resolve().parents[2]
TOUR_HEADING = "## A tour of the API"
README_GATEWAY = "GW=http://127.0.0.1:8000"
# What `./run up` or the developer's shell would provide that the test system has elsewhere.
# Not the event hub's URL: the CLI finds it in the data directory, as after `./run up --base-port N`.
SYSTEM_ENV = (
    "PATIENTFLOW_DATABASE_URL",
    "PATIENTFLOW_SCHEMA_PREFIX",
)
PREAMBLE = """set -euo pipefail
trap 'echo "tour failed in block $BLOCK at line $LINENO: $BASH_COMMAND" >&2' ERR
"""


def tour_blocks() -> list[str]:
    """The ```sh blocks of the README's tour section, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(TOUR_HEADING)
    end = readme.find("\n## ", start + len(TOUR_HEADING))
    section = readme[start : end if end != -1 else None]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)


def test_the_tour_needs_nothing_a_fresh_machine_lacks_and_fails_on_errors() -> None:
    blocks = tour_blocks()
    tour = "\n".join(blocks)
    assert len(blocks) >= 8 and blocks[0].startswith(README_GATEWAY)
    assert "data/dev-keys.json" in blocks[0]
    assert not re.search(r"\buuidgen\b|\bjq\b|<[a-z ]+ id>|<token>|<id>", tour)
    commands = re.split(r"(?<!\\)\n", tour)  # continuation lines joined to their command
    curls = [c for c in commands if re.search(r"\bcurl\s", c)]
    assert curls and all("--fail-with-body" in c for c in curls), [c for c in curls if "--fail" not in c]


def test_the_readme_tour_runs_as_written(system: System, tmp_path: Path) -> None:
    blocks = tour_blocks()
    script = PREAMBLE + "".join(
        f"BLOCK='{n}: {block.splitlines()[0][:60]}'\n{block}" for n, block in enumerate(blocks, 1)
    )
    assert README_GATEWAY in script
    script = script.replace(README_GATEWAY, f"GW={system.url('gateway')}")
    for id_number in set(re.findall(r'"id_number": "(\d{17}[\dX])"', script)):
        script = script.replace(id_number, random_id_number())
    (tmp_path / "data").symlink_to(system.data_dir)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {name: value for name, value in os.environ.items() if name != "GATEWAY_EVENTS_URL"}
    env |= {name: system.env[name] for name in SYSTEM_ENV if name in system.env}
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    output = f"{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-5000:]}"
    assert result.returncode == 0, output
    assert "Traceback" not in result.stderr, output
