"""The bank lesson, proven: the simulator reproduces the paper's worked example and replays days."""

from pathlib import Path

import pytest

from patientflow.cli import main
from patientflow.simulate import (
    DAYS,
    Arrival,
    Lane,
    Outcome,
    Served,
    WaitSummary,
    parse_split,
    read_arrivals,
    simulate,
    summarise,
)
from services.triage.rules import QueueRules


def by_class(outcome: Outcome) -> dict[str, WaitSummary]:
    return {row.label: row for row in outcome.summary()}


def paper_crowd(*, simple_first_in_line: bool) -> list[Arrival]:
    """20 customers at once: 10 simple (3 min), 10 complex (10 min), in the order they took tickets."""
    simple = [(3.0, "simple")] * 10
    complex_ = [(10.0, "complex")] * 10
    line = simple + complex_ if simple_first_in_line else complex_ + simple
    return [Arrival(i + 1, 0.0, minutes, kind) for i, (minutes, kind) in enumerate(line)]


def test_the_papers_worked_example_simple_first() -> None:
    # Complex customers took their tickets first; shortest-expected-work-first still serves simple first.
    outcome = simulate(
        paper_crowd(simple_first_in_line=False), rules=QueueRules(shortest_work_first=True), lanes=[Lane(10)]
    )
    rows = by_class(outcome)
    assert outcome.makespan == 13.0  # 130 minutes of work on 10 counters
    assert (rows["simple"].mean, rows["simple"].max) == (0.0, 0.0)
    assert (rows["complex"].mean, rows["complex"].max) == (
        3.0,
        3.0,
    )  # "complex customers wait only 3 minutes"
    assert rows["all"].mean == 1.5
    # The crowd of 20 lasts 3 minutes: by then everyone is at a counter.
    assert max(s.start for s in outcome.served) == 3.0


def test_the_papers_worked_example_complex_first() -> None:
    outcome = simulate(paper_crowd(simple_first_in_line=False), rules=QueueRules(), lanes=[Lane(10)])
    rows = by_class(outcome)
    assert outcome.makespan == 13.0  # the same makespan either way
    assert (rows["complex"].mean, rows["complex"].max) == (0.0, 0.0)
    assert (rows["simple"].mean, rows["simple"].max) == (10.0, 10.0)  # 20 people kept waiting 10 minutes
    assert rows["all"].mean == 5.0
    assert max(s.start for s in outcome.served) == 10.0


def test_first_come_with_simple_first_in_line_is_the_same_as_simple_first() -> None:
    outcome = simulate(paper_crowd(simple_first_in_line=True), rules=QueueRules(), lanes=[Lane(10)])
    assert (by_class(outcome)["all"].mean, outcome.makespan) == (1.5, 13.0)


def test_split_lanes_serve_only_their_classes() -> None:
    lanes = parse_split(["simple=2"], counters=5)
    assert lanes == [Lane(2, frozenset({"simple"})), Lane(3, None)]
    outcome = simulate(paper_crowd(simple_first_in_line=False), rules=QueueRules(), lanes=lanes)
    assert {s.counter for s in outcome.served if s.arrival.service_class == "simple"} == {0, 1}
    assert {s.counter for s in outcome.served if s.arrival.service_class == "complex"} == {2, 3, 4}
    with pytest.raises(ValueError, match="no counter"):
        parse_split(["simple=5"], counters=5)


def test_summary_figures_and_the_ten_minute_target() -> None:
    # One counter, four 6-minute services arriving together: waits 0, 6, 12, 18.
    outcome = simulate([Arrival(i + 1, 0.0, 6.0) for i in range(4)], rules=QueueRules(), lanes=[Lane(1)])
    row = by_class(outcome)["all"]
    assert (row.patients, row.mean, row.p90, row.max, row.over_target_share) == (4, 9.0, 18.0, 18.0, 0.5)


def test_a_day_from_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    day = tmp_path / "day.csv"
    day.write_text(
        "arrival,service_minutes,class,level,priority,appointment\n"
        "08:00,10,complex,,,\n08:00,3,simple,,elderly,\n08:01,3,simple,I,,08:00\n",
        encoding="utf-8",
    )
    arrivals = read_arrivals(day)
    assert [(a.minute, a.level, a.priority, a.appointment) for a in arrivals] == [
        (480.0, None, None, None),
        (480.0, None, "elderly", None),
        (481.0, "I", None, 480.0),
    ]
    assert main(["simulate", "--arrivals", str(day), "--counters", "1"]) == 0
    printed = capsys.readouterr().out
    # Elderly first (priority), then the level I arriving a minute later, then the complex customer.
    assert "complex           1    6.0" in printed and "makespan 16.0 min" in printed


def test_generated_days_are_seeded() -> None:
    for generate in DAYS.values():
        assert generate(7) == generate(7)
        assert generate(7) != generate(8)


def test_cli_generated_day_with_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--day", "ed", "--seed", "3", "--counters", "5", "--ageing", "120"]) == 0
    assert "all" in capsys.readouterr().out
    assert main(["simulate", "--day", "morning", "--split", "simple=9"]) == 2


def test_the_cli_pools_seeded_days_as_the_readme_tables_do(capsys: pytest.CaptureFixture[str]) -> None:
    """`--days 10` is how a reader reproduces the README's tables: the split row, pooled, to the digit."""
    args = ["simulate", "--day", "morning", "--counters", "6", "--days", "10", "--split", "simple=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "all            2807    7.7   21.7   44.0      30%" in out
    assert "makespan" not in out  # ten days have no one makespan
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert "| all (2807) | 7.7 | 21.7 | 44.0 | 30% |" in readme


def test_the_readme_morning_table_is_what_the_simulator_says() -> None:
    """The README's figures are the simulator's (ten seeded mornings pooled, 6 counters)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for rules in (QueueRules(), QueueRules(shortest_work_first=True)):
        served = [
            s
            for seed in range(1, 11)
            for s in simulate(DAYS["morning"](seed), rules=rules, lanes=[Lane(6)]).served
        ]
        everyone = summarise_all(served)
        assert everyone in readme


def summarise_all(served: list[Served]) -> str:
    row = summarise("all", [s.wait for s in served])
    figures = f"{row.mean:.1f} | {row.p90:.1f} | {row.max:.1f} | {row.over_target_share:.0%}"
    return f"| all ({row.patients}) | {figures} |"
