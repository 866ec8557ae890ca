"""The arithmetic of the side-by-side benchmarks: /proc lines, whose process is whose, CPU, the table."""

import math

from bench.compare import (
    SUPERVISOR,
    ProcessStat,
    alternating,
    component_of,
    cpu_seconds,
    name_processes,
    parse_stat,
    side_by_side,
)
from bench.idle import cores

# A real line's shape (Linux proc(5)); the command name holds a space and a ')' of its own.
STAT = (
    "4242 (python (x) y) S 4200 4242 4242 0 -1 4194560 9000 0 0 0 "
    "1234 567 8 9 20 0 12 0 77777 900000000 20000 18446744073709551615"
)


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    assert parse_stat(STAT) == ProcessStat("python (x) y", ppid=4200, cpu_ticks=1234 + 567)


def test_component_of_reads_both_command_line_forms() -> None:
    today = ["/t/.venv/bin/python", "-m", "patientflow.cli", "serve", "billing", "--port", "9"]
    older = ["/t/.venv/bin/python", "-m", "uvicorn", "--factory", "services.results.app:create_app"]
    gateway = ["python", "-m", "uvicorn", "--factory", "gateway.app:create_app", "--port", "9"]
    assert component_of(today) == "billing"
    assert component_of(older) == "results"
    assert component_of(gateway) == "gateway"
    assert component_of(["python", "-m", "patientflow.cli", "up"]) is None


def test_name_processes_takes_the_tree_below_the_supervisor_only() -> None:
    parents = {10: 1, 11: 10, 12: 10, 13: 12, 99: 1}  # 13: a helper billing started; 99: not ours
    argvs = {11: ["python", "-m", "patientflow.cli", "serve", "triage"], 12: ["x", "serve", "billing"]}
    assert name_processes(10, parents, argvs) == {
        10: SUPERVISOR,
        11: "triage",
        12: "billing",
        13: "billing",
    }


def test_cpu_seconds_counts_new_processes_from_zero_and_sums_by_component() -> None:
    before = {1: ("supervisor", 100), 2: ("billing", 1_000), 3: ("gateway", 50)}
    # 3 restarted as 4 in between (its last ticks are lost); 5 is a second billing process.
    after = {1: ("supervisor", 110), 2: ("billing", 1_300), 4: ("gateway", 20), 5: ("billing", 100)}
    assert cpu_seconds(before, after, ticks_per_second=100) == {
        "supervisor": 0.1,
        "billing": 4.0,
        "gateway": 0.2,
    }


def test_cpu_seconds_does_not_credit_a_reused_pid_with_the_old_process_ticks() -> None:
    assert cpu_seconds({7: ("gateway", 500)}, {7: ("billing", 30)}, ticks_per_second=10) == {"billing": 3.0}


def test_idle_cores_divide_cpu_by_the_wall_window() -> None:
    before = {1: ("supervisor", 0), 2: ("events", 100)}
    after = {1: ("supervisor", 30), 2: ("events", 400)}
    figures = cores(before, after, wall_seconds=30.0)
    assert math.isclose(figures["cores, all processes"], (30 + 300) / 100 / 30)
    assert list(figures) == ["cores, all processes", "cores, events", "cores, supervisor"]


def test_side_by_side_gives_each_system_its_ratio_to_the_first() -> None:
    table = side_by_side(
        ["old", "new"],
        [
            {"journeys/s": 12.2, "failed": 4.0, "cores": 0.2345},
            {"journeys/s": 36.6, "failed": 0.0, "cores": 0.0412, "only new": 0.5},
        ],
    )
    lines = table.splitlines()
    assert lines[0] == "| figure | old | new | new ÷ old |"
    assert lines[2] == "| journeys/s | 12.2 | 36.6 | 3.00× |"
    assert lines[3] == "| failed | 4 | 0 | — |"  # a count: no ratio to or from zero
    assert lines[4] == "| cores | 0.234 | 0.041 | 0.18× |"
    assert lines[5] == "| only new | — | 0.500 | — |"  # a figure only one system has


def test_alternating_puts_each_system_first_as_often_as_last() -> None:
    assert alternating(["a", "b"], 3) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]
