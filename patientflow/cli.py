"""The `patientflow` command: `up` (the whole system), `serve`, `makemigration`, `keys` (API clients),
`simulate` (queue rules against a day's arrivals), `catalogue check` (a price-catalogue file, offline)."""

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from gateway import api_clients, repository
from gateway.config import GatewaySettings
from gateway.models import CLIENT_KINDS
from gateway.schemas import ApiClientCreate, ApiClientPublic, KeyRotation
from kit.auth import mint_internal_token, service_subject
from kit.clock import hospital_date, utcnow
from kit.config import DEV_INTERNAL_SECRET
from kit.database import Database
from kit.errors import ProblemError
from kit.migrations import make_revision
from kit.serving import OneSendHttpToolsProtocol
from patientflow.devkeys import read_dev_internal_secret, read_dev_url
from patientflow.supervisor import ServiceFailed, System, die_with_parent
from patientflow.topology import COMPONENTS, SERVICES

if TYPE_CHECKING:
    from patientflow.history import History

# httptools (uvicorn's protocol, each answer in one send: kit.serving) and uvloop by name (not
# "auto"), so a missing `uvicorn[standard]` fails loudly instead of quietly halving throughput; the
# access log is kit.metrics' (uvicorn's costs 0.7x per request).
UVICORN_OPTIONS: dict[str, Any] = {"http": OneSendHttpToolsProtocol, "loop": "uvloop", "access_log": False}


def up(args: argparse.Namespace) -> int:
    """Run all six processes (four services, event hub, gateway) until Ctrl-C; restart any that crashes,
    with backoff, forever."""
    ports = None
    if args.base_port:
        ports = {"gateway": args.base_port} | {s.name: args.base_port + 1 + i for i, s in enumerate(SERVICES)}
    system = System(Path(args.data_dir), ports=ports)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a process manager's stop
        signal.signal(signum, lambda *_: stopping.set())
    print(f"starting patientflow in {system.data_dir} ...", flush=True)
    try:
        system.start()
    except ServiceFailed as failure:
        print(f"patientflow failed to start: {failure}", file=sys.stderr)
        return 1
    gateway = system.url("gateway")
    for name, process in system.processes.items():
        print(f"  {name:<12} {system.url(name):<24} pid {process.pid}")
    print(f"\npatientflow is up. Gateway: {gateway}   (logs: {system.data_dir / 'logs'})")
    print("Development API keys (send as 'Authorization: Bearer <key>'):")
    for client, key in system.api_keys.items():
        print(f"  {client:<12} {key}")
    print(f"\nTry: curl -H 'Authorization: Bearer {system.api_keys['his-dev']}' {gateway}/v1/catalogue")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stopping.wait(0.2):
            for line in system.supervise():
                print(line, flush=True)
    finally:
        print("\nstopping ...", flush=True)
        system.stop()
        print("stopped.")
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run one component in the foreground (what each container runs)."""
    import uvicorn

    component = next(c for c in COMPONENTS if c.name == args.component)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    uvicorn.run(
        component.app,
        factory=True,
        host=args.host,
        port=args.port or component.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
        **UVICORN_OPTIONS,
    )
    return 0


def makemigration(args: argparse.Namespace) -> int:
    """Autogenerate the next Alembic revision of one component's database (a service or the gateway)."""
    component = next(c for c in COMPONENTS if c.name == args.service)
    assert component.migrations is not None
    with tempfile.TemporaryDirectory() as scratch:
        database = Database(f"sqlite:///{scratch}/scratch.db")
        make_revision(database, component.migrations, args.message)
        database.dispose()
    return 0


def keys(args: argparse.Namespace) -> int:
    """Manage API clients in the gateway's database; a running gateway sees changes within seconds."""
    settings = GatewaySettings(data_dir=Path(args.data_dir)) if args.data_dir else GatewaySettings()
    if settings.environment == "development" and settings.internal_secret == DEV_INTERNAL_SECRET:
        # No secret configured: use the one a running `patientflow up` keeps in the data directory.
        found = read_dev_internal_secret(settings.data_dir)
        settings.internal_secret = found or settings.internal_secret
    if settings.environment == "development" and "events_url" not in settings.model_fields_set:
        # No hub configured: the one the last `patientflow up` here started (after `--base-port` too).
        settings.events_url = read_dev_url(settings.data_dir, "events") or settings.events_url
    database = repository.open_database(settings)
    try:
        if args.keys_command == "revoke" and not args.keep_subscriptions:
            with database.session(write=False) as session:
                api_clients.get_client(session, name=args.name)  # unknown: 404 before the hub is asked
            if not _drop_subscriptions(settings, args.name):  # not inside the write transaction
                return 1
        with database.session() as session:
            if args.keys_command == "create":
                data = ApiClientCreate(
                    name=args.name,
                    kind=args.kind,
                    scopes=args.scope,
                    expires_at=args.expires_at,
                    rate_limit_per_second=args.rate_limit,
                    rate_burst=args.burst,
                )
                row, key = api_clients.create_client(session, data=data)
                _print_new_key(api_clients.to_public(row), key)
            elif args.keys_command == "rotate":
                grace = KeyRotation(grace_seconds=args.grace_seconds).grace_seconds
                row, key = api_clients.rotate_key(session, name=args.name, grace_seconds=grace)
                _print_new_key(api_clients.to_public(row), key)
            elif args.keys_command == "revoke":
                print(f"revoked {api_clients.revoke_client(session, name=args.name).name}")
            else:
                rows = repository.list_api_clients(session)
                print(f"{'name':<24} {'kind':<8} {'status':<8} {'prefix':<11} {'expires':<26} scopes")
                for public in (api_clients.to_public(row) for row in rows):
                    expires = public.expires_at.isoformat() if public.expires_at else "-"
                    prefix = public.key_prefix or "-"
                    print(
                        f"{public.name:<24} {public.kind:<8} {public.status:<8} {prefix:<11} "
                        f"{expires:<26} {' '.join(public.scopes)}"
                    )
    except ValidationError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 2
    except ProblemError as exc:
        print(exc.detail, file=sys.stderr)
        return 1
    finally:
        database.dispose()
    return 0


def _drop_subscriptions(settings: GatewaySettings, name: str) -> bool:
    """Ask the event hub to delete the client's webhook subscriptions, as the admin API does before a
    revocation; False (with the reason on stderr) if it did not confirm, so nothing gets revoked."""
    token = mint_internal_token(
        settings.internal_secret, service_subject("gateway"), set(), audience="events"
    )
    url = f"{settings.events_url.rstrip('/')}/owners/{quote(name, safe='')}/subscriptions"
    try:
        response = httpx.delete(url, headers={"authorization": f"Bearer {token}"}, timeout=5.0)
        response.raise_for_status()
        deleted = int(response.json()["deleted"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        print(
            f"error: the event hub at {settings.events_url} did not delete the webhook subscriptions of "
            f"{name} ({exc}); nothing was revoked. Retry when the hub is up, or pass --keep-subscriptions "
            "if the hub is being decommissioned.",
            file=sys.stderr,
        )
        return False
    print(f"deleted {deleted} webhook subscription(s) of {name}")
    return True


def _print_new_key(client: ApiClientPublic, key: str) -> None:
    print(f"client {client.name} ({client.kind}), scopes: {' '.join(client.scopes) or '-'}")
    print(f"API key (shown once, store it now): {key}")
    if client.previous_key_expires_at:
        print(f"the previous key works until {client.previous_key_expires_at.isoformat()}")


def _add_keys_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    keys_parser = commands.add_parser("keys", help="create, list, rotate or revoke gateway API clients")
    keys_parser.add_argument("--data-dir", default=None, help="where gateway.db lives (default: env)")
    keys_parser.set_defaults(func=keys)
    actions = keys_parser.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="a new client; prints its key once")
    create.add_argument("name")
    create.add_argument("--kind", required=True, choices=sorted(CLIENT_KINDS))
    create.add_argument("--scope", action="append", default=[], help="repeat for each scope")
    create.add_argument("--expires-at", default=None, help="ISO 8601 instant with a UTC offset")
    create.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    create.add_argument("--burst", type=int, default=None)
    actions.add_parser("list", help="every client, without keys")
    rotate = actions.add_parser("rotate", help="a new key for a client; prints it once")
    rotate.add_argument("name")
    rotate.add_argument("--grace-seconds", type=int, default=0, help="how long the old key keeps working")
    revoke = actions.add_parser(
        "revoke", help="stop every key of a client (after the event hub deletes its webhook subscriptions)"
    )
    revoke.add_argument("name")
    revoke.add_argument(
        "--keep-subscriptions",
        action="store_true",
        help="revoke without asking the event hub to delete the client's webhook subscriptions "
        "(only for when the hub is being decommissioned)",
    )


def simulate(args: argparse.Namespace) -> int:
    """Replay a day (CSV or generated) against queue rules and counters; print the waits per class."""
    from patientflow import simulate as sim
    from services.triage.rules import QueueRules

    try:
        rules = QueueRules.model_validate_json(Path(args.rules).read_text()) if args.rules else QueueRules()
        updates: dict[str, Any] = {}
        if args.shortest_first:
            updates["shortest_work_first"] = True
        if args.ageing is not None:
            updates["ageing_minutes"] = args.ageing
        rules = QueueRules.model_validate(rules.model_dump() | updates)
        history = _history(args) if args.history else None
        if history is not None:
            arrivals = history.arrivals
        else:
            arrivals = (
                sim.read_arrivals(Path(args.arrivals)) if args.arrivals else sim.DAYS[args.day](args.seed)
            )
        counters = args.counters or (history.peak_in_service if history else 0) or 6
        lanes = sim.parse_split(args.split, counters=counters)
    except (OSError, ValueError, KeyError, httpx.HTTPError) as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    if not arrivals:
        print("simulate: no arrivals", file=sys.stderr)
        return 2
    if history is not None:
        recorded = history.recorded()
        print(
            f"history {args.history.isoformat()}: {recorded.patients} served ({history.left_out} left out: "
            f"no service time), at most {history.peak_in_service} in service at once; replayed on {counters}"
        )
        print(
            f"as it happened: mean {recorded.mean:.1f}, p90 {recorded.p90:.1f}, max {recorded.max:.1f} min, "
            f"{recorded.over_target_share:.0%} over 10 min"
        )
    given = args.arrivals or history is not None
    if args.estimates:  # the wait estimator measured on this day (or on --days seeded days, pooled)
        days = [arrivals] if given else [sim.DAYS[args.day](args.seed + i) for i in range(args.days)]
        checks = [c for day in days for c in sim.replay_estimates(day, rules=rules, lanes=lanes)]
        print(sim.format_estimates(checks))
        return 0
    if args.days > 1 and not given:  # --days seeded days, pooled (the README's tables)
        days = [sim.DAYS[args.day](args.seed + i) for i in range(args.days)]
        served = [s for day in days for s in sim.simulate(day, rules=rules, lanes=lanes).served]
        print(sim.format_table(sim.Outcome(served=served), makespan=False))
        return 0
    print(sim.format_table(sim.simulate(arrivals, rules=rules, lanes=lanes)))
    return 0


def _history(args: argparse.Namespace) -> "History":
    """A day of the system's own history from the event hub, through the gateway (a `metrics:read` key:
    `--key`, $PATIENTFLOW_API_KEY, or the development `his-dev` key of `--data-dir`)."""
    from patientflow.history import fetch_tickets, from_tickets

    data_dir = Path(args.data_dir)
    url = args.gateway or f"{read_dev_url(data_dir, 'gateway') or 'http://127.0.0.1:8000'}/v1"
    key = args.key or os.environ.get("PATIENTFLOW_API_KEY") or _dev_key(data_dir, "his-dev")
    if not key:
        raise ValueError("--history needs a key with metrics:read (--key or PATIENTFLOW_API_KEY)")
    tickets = fetch_tickets(url, key=key, day=args.history, queue=args.queue)
    return from_tickets(tickets, day=args.history, simple_under=args.simple_under)


def _hospital_day(text: str) -> date:
    """`today` (at the hospital, Asia/Shanghai) or an ISO date."""
    return hospital_date(utcnow()) if text == "today" else date.fromisoformat(text)


def _dev_key(data_dir: Path, client: str) -> str | None:
    try:
        key = json.loads((data_dir / "dev-keys.json").read_text()).get(client)
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def _add_simulate_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    run = commands.add_parser(
        "simulate", help="replay a day's arrivals against queue rules (the bank lesson)"
    )
    source = run.add_mutually_exclusive_group()
    source.add_argument(
        "--arrivals", help="CSV: arrival,service_minutes,class[,level][,priority][,appointment]"
    )
    source.add_argument("--day", choices=["morning", "ed"], default="morning", help="a generated day")
    source.add_argument(
        "--history",
        type=_hospital_day,
        help="YYYY-MM-DD or today: replay that hospital day of the running system (the event hub's tickets)",
    )
    run.add_argument("--queue", help="with --history: only this queue (department, window or room)")
    run.add_argument("--gateway", help="with --history: the gateway's /v1 URL (default: --data-dir's)")
    run.add_argument("--key", help="with --history: an API key with metrics:read")
    run.add_argument("--data-dir", default="data", help="with --history: where `patientflow up` keeps keys")
    run.add_argument(
        "--simple-under",
        type=float,
        default=5.0,
        help="with --history: a recorded service of at most this many minutes counts as simple",
    )
    run.add_argument("--seed", type=int, default=1, help="for a generated day")
    run.add_argument(
        "--counters", type=int, default=None, help="counters (or doctors) in all (6; history: its peak)"
    )
    run.add_argument("--rules", help="a JSON file of queue rules (services/triage/rules.py QueueRules)")
    run.add_argument("--shortest-first", action="store_true", help="shorter expected service first")
    run.add_argument("--ageing", type=int, default=None, help="ageing bound in minutes")
    run.add_argument(
        "--split", action="append", default=[], help="CLASS=N: N counters serve only that class (repeatable)"
    )
    run.add_argument(
        "--estimates",
        action="store_true",
        help="measure the wait estimator: the band each patient got on arrival against the real wait",
    )
    run.add_argument(
        "--days", type=int, default=1, help="this many generated days (seeds --seed, --seed+1, ...), pooled"
    )
    run.set_defaults(func=simulate)


def catalogue_check(args: argparse.Namespace) -> int:
    """Check a price-catalogue CSV file as billing's upload would, without loading it: every bad line."""
    from services.billing.catalogue import read_catalogue
    from services.billing.errors import CatalogueInvalid

    try:
        content = Path(args.file).read_bytes()
    except OSError as error:
        print(f"catalogue check: {error}", file=sys.stderr)
        return 2
    try:
        rows = read_catalogue(content)
    except CatalogueInvalid as invalid:
        for problem in invalid.extra["errors"]:
            column = problem["column"] or "-"
            print(f"{args.file}:{problem['line']}: {column}: {problem['message']}", file=sys.stderr)
        return 1
    items = len({row.hospital_code for _, row in rows})
    print(f"{args.file}: {len(rows)} price periods of {items} items, every row valid")
    return 0


def _add_catalogue_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    catalogue = commands.add_parser("catalogue", help="check a price-catalogue CSV file before uploading it")
    actions = catalogue.add_subparsers(dest="catalogue_command", required=True)
    check = actions.add_parser("check", help="every bad row with its line (exit 1), or a summary (exit 0)")
    check.add_argument("file")
    check.set_defaults(func=catalogue_check)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patientflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("up", help="run the whole system on localhost until Ctrl-C")
    run.add_argument("--data-dir", default="data", help="where the SQLite files, keys and logs live")
    run.add_argument(
        "--base-port",
        type=int,
        default=None,
        help=f"gateway on this port, the services and the event hub on the next {len(SERVICES)}",
    )
    run.set_defaults(func=up)
    one = commands.add_parser("serve", help="run one component in the foreground (containers use this)")
    one.add_argument("component", choices=[c.name for c in COMPONENTS])
    one.add_argument("--host", default="127.0.0.1")
    one.add_argument("--port", type=int, default=None)
    one.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    one.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process (a supervisor) dies"
    )
    one.set_defaults(func=serve)
    make = commands.add_parser("makemigration", help="autogenerate a component's next Alembic revision")
    make.add_argument("service", choices=[c.name for c in COMPONENTS if c.migrations is not None])
    make.add_argument("-m", "--message", required=True)
    make.set_defaults(func=makemigration)
    _add_keys_command(commands)
    _add_simulate_command(commands)
    _add_catalogue_command(commands)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
