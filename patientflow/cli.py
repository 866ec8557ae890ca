"""`patientflow up` runs the whole system; `patientflow makemigration` writes a service's next revision."""

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from kit.database import Database
from kit.migrations import make_revision
from patientflow.supervisor import ServiceFailed, System
from patientflow.topology import COMPONENTS, SERVICES


def up(args: argparse.Namespace) -> int:
    """Run all five processes until Ctrl-C; restart any that crashes."""
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
    print(f"\npatientflow is up. Gateway: {gateway}   (logs: {system.data_dir / 'logs'})")
    print("Development API keys (send as 'Authorization: Bearer <key>'):")
    for client, key in system.api_keys.items():
        print(f"  {client:<12} {key}")
    print(f"\nTry: curl -H 'Authorization: Bearer {system.api_keys['his-dev']}' {gateway}/v1/catalogue")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stopping.wait(1.0):
            for name in system.restart_crashed():
                print(f"{name} had stopped; restarted it", flush=True)
    finally:
        print("\nstopping ...", flush=True)
        system.stop()
        print("stopped.")
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run one component in the foreground (what each container runs)."""
    import uvicorn

    component = next(c for c in COMPONENTS if c.name == args.component)
    uvicorn.run(
        component.app,
        factory=True,
        host=args.host,
        port=args.port or component.port,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def makemigration(args: argparse.Namespace) -> int:
    component = next(c for c in SERVICES if c.name == args.service)
    assert component.migrations is not None
    with tempfile.TemporaryDirectory() as scratch:
        database = Database(f"sqlite:///{scratch}/scratch.db")
        make_revision(database, component.migrations, args.message)
        database.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patientflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("up", help="run the whole system on localhost until Ctrl-C")
    run.add_argument("--data-dir", default="data", help="where the SQLite files, keys and logs live")
    run.add_argument(
        "--base-port", type=int, default=None, help="gateway on this port, the services on the next four"
    )
    run.set_defaults(func=up)
    one = commands.add_parser("serve", help="run one component in the foreground (containers use this)")
    one.add_argument("component", choices=[c.name for c in COMPONENTS])
    one.add_argument("--host", default="127.0.0.1")
    one.add_argument("--port", type=int, default=None)
    one.set_defaults(func=serve)
    make = commands.add_parser("makemigration", help="autogenerate a service's next Alembic revision")
    make.add_argument("service", choices=[c.name for c in SERVICES])
    make.add_argument("-m", "--message", required=True)
    make.set_defaults(func=makemigration)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
