"""The wait estimator: an honest band (low–high minutes) for a patient's wait, from recent service times.

Pure (no I/O), so the live queue (`positions.py`) and the simulator's replay (`patientflow simulate
--estimates`) run exactly this code. The model: `stations` counters are busy with the patients ahead;
the patient is called at the `n`-th service end from now, `n = ahead + 1 - free stations`. Service
ends of `c` counters in parallel come at `c / mean` per minute, so the wait has mean `n · mean / c`
and, for service times of variance `var`, variance `n · var / c²` (a superposition of renewal
processes), plus `(n / c)² · var / m`: the mean itself is only known from `m` recent services. The band
is the `LOW_QUANTILE`–`HIGH_QUANTILE` range of a gamma distribution with that mean and variance
(Wilson–Hilferty's approximation of its quantiles), rounded outwards to whole minutes.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

# The band's edges: the real wait should fall above the top in at most 1 case in 10; the quantiles were
# tuned on simulated mornings (README, "Wait estimates"), not picked to flatter them.
LOW_QUANTILE = 0.2
HIGH_QUANTILE = 0.95
# Before any service has been timed today: the prior mean service time, worth this many services.
PRIOR_SERVICE_MINUTES = 5.0
PRIOR_WEIGHT = 3
# No service is as regular as a few equal samples suggest: the spread assumed is at least this share of
# the mean (a coefficient of variation).
MIN_VARIATION = 0.25
# Recent means: services finished within this window, at most this many of the latest.
WINDOW_MINUTES = 60.0
MAX_SAMPLES = 100


@dataclass(frozen=True, slots=True)
class ServiceSpell:
    """One patient's time at a station: called at `start`, finished at `end` (None while in service),
    minutes on any common clock; `station` is the counter's code when the call named one."""

    start: float
    end: float | None
    station: str | None = None


@dataclass(frozen=True, slots=True)
class Basis:
    """What a band was estimated from (shown to staff; no patient in it)."""

    services: int  # recent services timed
    mean_service_minutes: float
    stations: int  # stations estimated to be calling
    busy: int  # patients at a station now


@dataclass(frozen=True, slots=True)
class WaitBand:
    low_minutes: int
    high_minutes: int
    expected_minutes: float
    basis: Basis

    @property
    def midpoint(self) -> float:
        return (self.low_minutes + self.high_minutes) / 2


def recent_durations(spells: Sequence[ServiceSpell], *, now: float) -> list[float]:
    """Service minutes of the spells finished within `WINDOW_MINUTES` before `now`, latest first."""
    done = [s for s in spells if s.end is not None and now - WINDOW_MINUTES <= s.end <= now]
    done.sort(key=lambda s: s.end or 0.0, reverse=True)
    return [max((s.end or s.start) - s.start, 0.0) for s in done[:MAX_SAMPLES]]


def active_stations(spells: Sequence[ServiceSpell], *, now: float, configured: int | None = None) -> int:
    """How many stations are calling: the distinct named stations of the window's calls, or the most
    services seen at once when calls name none; at least those busy now, at most `configured`. With no
    call in the window yet, every configured station counts (none measured closed)."""
    window = [s for s in spells if s.start <= now and (s.end is None or s.end >= now - WINDOW_MINUTES)]
    if not window:
        return max(configured or 1, 1)
    busy = sum(1 for s in window if s.end is None or s.end > now)
    named = {s.station for s in window if s.station is not None}
    count = max(len(named), _peak_overlap(window, now=now), busy, 1)
    return min(count, configured) if configured else count


def _peak_overlap(spells: Sequence[ServiceSpell], *, now: float) -> int:
    edges = sorted(
        [(s.start, 1) for s in spells] + [(min(s.end, now), -1) for s in spells if s.end is not None]
    )
    peak = current = 0
    for _, step in edges:  # an end sorts before a start at the same instant (-1 < 1)
        current += step
        peak = max(peak, current)
    return peak


def _gamma_quantile(mean: float, variance: float, share: float) -> float:
    if mean <= 0:
        return 0.0
    if variance <= 0:
        return mean
    shape = mean * mean / variance
    z = NormalDist().inv_cdf(share)
    cube = 1 - 1 / (9 * shape) + z * math.sqrt(1 / (9 * shape))
    return max(mean * cube**3, 0.0)


def estimate_wait(
    *,
    ahead: int,
    busy: int,
    stations: int,
    service_minutes: Sequence[float],
    prior_minutes: float = PRIOR_SERVICE_MINUTES,
) -> WaitBand:
    """The band for a patient with `ahead` patients before them in the queue's order, `busy` of the
    `stations` counters serving someone, and `service_minutes` the recent services' durations."""
    stations = max(stations, busy, 1)
    samples = len(service_minutes)
    mean = (sum(service_minutes) + PRIOR_WEIGHT * prior_minutes) / (samples + PRIOR_WEIGHT)
    if samples >= 2:
        centre = sum(service_minutes) / samples
        variance = sum((m - centre) ** 2 for m in service_minutes) / (samples - 1)
    else:
        variance = prior_minutes**2  # exponential-like until measured
    variance = max(variance, (MIN_VARIATION * mean) ** 2)
    basis = Basis(samples, round(mean, 2), stations, busy)
    ends = ahead + 1 - (stations - busy)  # the service ends to wait for; free stations call at once
    if ends <= 0:
        return WaitBand(0, 1, 0.0, basis)
    expected = ends * mean / stations
    spread = ends * variance / stations**2 + (ends / stations) ** 2 * variance / (samples + PRIOR_WEIGHT)
    low = math.floor(_gamma_quantile(expected, spread, LOW_QUANTILE))
    high = max(math.ceil(_gamma_quantile(expected, spread, HIGH_QUANTILE)), low + 1)
    return WaitBand(low, high, round(expected, 1), basis)
