"""The idle system's CPU: how many cores the six processes burn when nobody calls them.

Starts this tree's system (and, with `--compare TREE`, another tree's beside it, built as `bench.compare`
builds it), lets them settle, then reads the utime + stime of every process of each system from /proc at
the start and end of the same window: cores = CPU seconds / wall seconds, by component. All systems idle
at once, so they share whatever else the machine is doing.

    python -m bench.idle --compare /work/wt/baseline --seconds 30
"""

import argparse
import sys
import time
from contextlib import ExitStack

from bench.common import machine, write_results
from bench.compare import (
    Snapshot,
    add_system_arguments,
    component_order,
    cpu_seconds,
    log,
    side_by_side,
    start_all,
    systems_from,
)


def cores(before: Snapshot, after: Snapshot, wall_seconds: float) -> dict[str, float]:
    """Cores used by each component over the window, and in all ("all processes") first."""
    used = cpu_seconds(before, after)
    figures = {"cores, all processes": sum(used.values()) / wall_seconds}
    for name in component_order(used):
        figures[f"cores, {name}"] = used[name] / wall_seconds
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n")[0])
    add_system_arguments(parser)
    parser.add_argument("--seconds", type=float, default=30, help="length of the measured window")
    parser.add_argument("--settle-seconds", type=float, default=5, help="idle time before measuring")
    args = parser.parse_args(argv)
    systems = systems_from(args)
    with ExitStack() as stack:
        start_all(stack, systems, frozen=False)
        log(f"settling {args.settle_seconds:g} s, then measuring {args.seconds:g} s …")
        time.sleep(args.settle_seconds)
        before, started = [system.snapshot() for system in systems], time.monotonic()
        time.sleep(args.seconds)
        after, wall = [system.snapshot() for system in systems], time.monotonic() - started
        figures = [cores(b, a, wall) for b, a in zip(before, after, strict=True)]
        labels = [system.label for system in systems]
    print(f"## The idle system ({wall:.0f} s after {args.settle_seconds:g} s settling)\n")
    print(side_by_side(labels, figures))
    path = write_results(
        "idle",
        {
            "args": vars(args) | {"compare": [str(tree) for tree in args.compare]},
            "machine": machine(),
            "systems": [{"label": label, **figure} for label, figure in zip(labels, figures, strict=True)],
        },
    )
    log(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
