"""`patientflow up` runs the whole system; `patientflow makemigration` writes a service's next revision."""

import argparse
import sys
import tempfile

from kit.database import Database
from kit.migrations import make_revision
from patientflow.topology import SERVICES


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
    make = commands.add_parser("makemigration", help="autogenerate a service's next Alembic revision")
    make.add_argument("service", choices=[c.name for c in SERVICES])
    make.add_argument("-m", "--message", required=True)
    make.set_defaults(func=makemigration)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
