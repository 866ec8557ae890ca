"""`patientflow simulate --history`: a day of the system's own tickets, read from a running hub, replayed.

The seeded day is one counter calling the next patient the moment it is free, first come first served:
replayed on that configuration it must give back exactly the waits that were recorded; on two counters
the same patients wait less.
"""

from datetime import date, timedelta

import httpx
import pytest

from kit.auth import mint_internal_token
from kit.testing import TEST_SECRET, FakeFeed
from patientflow.cli import main
from patientflow.history import from_tickets
from tests.events.factories import logged_ids
from tests.events.test_wait_metrics import DAY, T0, VisitFeeds

# (arrival minute, service minutes) after 08:00; served in turn by one counter: waits 0, 5, 6, 13, 13, 15.
DAY_OF_ONE_COUNTER = [(0, 6), (1, 2), (2, 8), (3, 1), (4, 3), (5, 2)]


def seed_day(feeds: dict[str, FakeFeed]) -> int:
    published, free_at = 0, 0.0
    for number, (arrival, service) in enumerate(DAY_OF_ONE_COUNTER):
        visit = VisitFeeds(feeds, f"v{number}", "internal", arrival)
        start = max(free_at, arrival)
        visit.ticket(queued=arrival, called=start, finished=start + service)
        free_at = start + service
        published += visit.count
    no_show = VisitFeeds(feeds, "gone", "internal", 6)
    no_show.ticket(queued=6, called=None, finished=None)
    elsewhere = VisitFeeds(feeds, "cut", "surgery", 1)
    elsewhere.ticket(queued=1, called=2, finished=30)
    return published + no_show.count + elsewhere.count


def all_row(output: str) -> list[str]:
    [row] = [line.split() for line in output.splitlines() if line.startswith("all ")]
    return row  # label, patients, mean, p90, max, share


@pytest.fixture
def seeded_hub(hub: httpx.Client, feeds: dict[str, FakeFeed]) -> tuple[str, str]:
    """The hub's URL with the seeded day logged, and a bearer token holding `metrics:read`."""
    logged_ids(hub, seed_day(feeds))
    token = mint_internal_token(TEST_SECRET, "his-dev", {"metrics:read"}, audience="events")
    return str(hub.base_url), token


def test_replaying_a_recorded_day_on_its_own_counters_gives_back_its_waits(
    seeded_hub: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, token = seeded_hub
    args = ["simulate", "--history", DAY, "--queue", "internal", "--gateway", url, "--key", token]
    assert main(args) == 0
    output = capsys.readouterr().out
    assert "6 served (1 left out: no service time), at most 1 in service at once; replayed on 1" in output
    assert "as it happened: mean 8.7, p90 15.0, max 15.0 min, 50% over 10 min" in output
    assert all_row(output) == ["all", "6", "8.7", "15.0", "15.0", "50%"]  # the same: 13, 13, 15 > 10


def test_the_same_day_on_two_counters(
    seeded_hub: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, token = seeded_hub
    args = ["simulate", "--history", DAY, "--queue", "internal", "--gateway", url, "--key", token]
    assert main([*args, "--counters", "2"]) == 0
    assert all_row(capsys.readouterr().out) == ["all", "6", "2.0", "5.0", "5.0", "0%"]


def test_a_key_without_metrics_read_or_an_empty_day_is_a_clear_error(
    seeded_hub: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = seeded_hub
    nurse = mint_internal_token(TEST_SECRET, "nurse-dev", {"triage:read"}, audience="events")
    assert main(["simulate", "--history", DAY, "--gateway", url, "--key", nurse]) == 2
    assert "answered 403" in capsys.readouterr().err
    _, token = seeded_hub
    assert main(["simulate", "--history", "2026-03-03", "--gateway", url, "--key", token]) == 2
    assert "no arrivals" in capsys.readouterr().err


def test_tickets_become_arrivals_from_the_hospital_midnight_classed_by_service_time() -> None:
    def ticket(queued: float, service: float | None) -> dict[str, object]:
        at = [T0 + timedelta(minutes=m) for m in (queued, queued + 1)]
        ended = None if service is None else (at[1] + timedelta(minutes=service)).isoformat()
        return {"queued_at": at[0].isoformat(), "called_at": at[1].isoformat(),
                "service_started_at": at[1].isoformat(), "ended_at": ended}  # fmt: skip

    history = from_tickets(
        [ticket(30, 12), ticket(0, 3), ticket(5, None)], day=date(2026, 3, 2), simple_under=5
    )
    assert [(a.number, a.minute, a.service_minutes, a.service_class) for a in history.arrivals] == [
        (1, 480, 3, "simple"),  # 08:00 at the hospital
        (2, 510, 12, "complex"),
    ]
    assert (history.recorded_waits, history.left_out, history.peak_in_service) == ([1, 1], 1, 1)
