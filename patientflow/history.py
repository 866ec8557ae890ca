"""The simulator's third source: a day of the system's own history, as the event hub recorded it.

`GET /v1/wait-metrics/tickets` (through the gateway, with a `metrics:read` key) answers every ticket of
a day — when it was queued, first called, when its service began (the last call) and ended — with no
patient, visit or ticket id. Each served ticket becomes an `Arrival`: its arrival is the queueing time,
its service time what the counter really spent. What history does not say is a ticket's service class,
so it is read off the recorded service time (`simple_under`): the replay sorts patients as if the desk
had known in advance, which is the bank paper's assumption too. Tickets never called, or called and
never finished (no-shows, cancellations, still in service), have no service time and are left out.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

import httpx

from kit.clock import HOSPITAL_TZ
from patientflow.simulate import Arrival, WaitSummary, summarise

TICKETS_PATH = "/wait-metrics/tickets"


@dataclass(frozen=True, slots=True)
class History:
    """A day replayable: the served tickets as arrivals, with the waits they really had."""

    arrivals: list[Arrival]
    recorded_waits: list[float]  # minutes from queueing to the first call, as it happened
    left_out: int  # tickets without a service time
    peak_in_service: int  # the most patients in service at once: counters really working

    def recorded(self) -> WaitSummary:
        return summarise("recorded", self.recorded_waits)


def _minute(instant: datetime, day: date) -> float:
    midnight = datetime.combine(day, time(), HOSPITAL_TZ)
    return (instant - midnight).total_seconds() / 60


def from_tickets(tickets: Sequence[dict[str, object]], *, day: date, simple_under: float) -> History:
    """Arrivals (minutes from the hospital midnight of `day`) from the hub's ticket replays."""
    served, left_out = [], 0
    for ticket in tickets:
        times = [ticket.get(k) for k in ("queued_at", "called_at", "service_started_at", "ended_at")]
        if not all(isinstance(t, str) for t in times):
            left_out += 1
            continue
        queued, called, started, ended = (datetime.fromisoformat(str(t)) for t in times)
        served.append((queued, called, started, ended))
    served.sort(key=lambda row: row[0])
    arrivals, waits = [], []
    for number, (queued, called, started, ended) in enumerate(served, start=1):
        service = (ended - started).total_seconds() / 60
        kind = "simple" if service <= simple_under else "complex"
        arrivals.append(Arrival(number, _minute(queued, day), service, kind))
        waits.append((called - queued).total_seconds() / 60)
    return History(arrivals, waits, left_out, _peak([(s, e) for _, _, s, e in served]))


def _peak(spans: Sequence[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end and a start at the same instant do not overlap)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = level = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def fetch_tickets(
    base_url: str, *, key: str, day: date, queue: str | None, timeout: float = 30.0
) -> list[dict[str, object]]:
    """The day's tickets from the hub: `base_url` is the gateway's `/v1` (or the hub itself), `key` a
    bearer credential holding `metrics:read`. A problem answer is raised with its detail."""
    params = {"from_date": day.isoformat(), **({"queue": queue} if queue else {})}
    response = httpx.get(
        base_url.rstrip("/") + TICKETS_PATH,
        params=params,
        headers={"authorization": f"Bearer {key}"},
        timeout=timeout,
    )
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ValueError(f"the event hub answered {response.status_code}: {detail}")
    tickets: list[dict[str, object]] = response.json()
    return tickets
