"""The wait estimator (triage estimates.py): a band that widens with the line and narrows with data."""

from hypothesis import given
from hypothesis import strategies as st

from services.triage.estimates import ServiceSpell, active_stations, estimate_wait, recent_durations


def test_a_free_station_calls_at_once() -> None:
    band = estimate_wait(ahead=1, busy=1, stations=3, service_minutes=[4.0, 6.0])
    assert (band.low_minutes, band.high_minutes, band.expected_minutes) == (0, 1, 0.0)


def test_the_band_is_centred_on_the_work_ahead_shared_by_the_stations() -> None:
    # 11 ahead, 2 stations both busy: the 12th service end from now, at 2 per 5 minutes -> 30 minutes.
    band = estimate_wait(ahead=11, busy=2, stations=2, service_minutes=[5.0] * 40 + [4.0, 6.0] * 20)
    assert band.expected_minutes == 30.0
    assert band.low_minutes < 30 < band.high_minutes
    assert band.high_minutes - band.low_minutes <= 8  # steady 4-6 minute services: a narrow band
    assert (band.basis.services, band.basis.stations, band.basis.busy) == (80, 2, 2)


def test_more_measurements_narrow_the_band() -> None:
    few = estimate_wait(ahead=10, busy=2, stations=2, service_minutes=[2.0, 8.0, 5.0])
    many = estimate_wait(ahead=10, busy=2, stations=2, service_minutes=[2.0, 8.0, 5.0] * 30)
    assert many.high_minutes - many.low_minutes < few.high_minutes - few.low_minutes


@given(
    ahead=st.integers(0, 200),
    busy=st.integers(0, 8),
    stations=st.integers(0, 8),
    minutes=st.lists(st.floats(0, 120), max_size=60),
)
def test_the_band_is_ordered_and_grows_with_the_line(
    ahead: int, busy: int, stations: int, minutes: list[float]
) -> None:
    band = estimate_wait(ahead=ahead, busy=busy, stations=stations, service_minutes=minutes)
    longer = estimate_wait(ahead=ahead + 5, busy=busy, stations=stations, service_minutes=minutes)
    assert 0 <= band.low_minutes < band.high_minutes
    assert band.low_minutes <= longer.low_minutes and band.high_minutes <= longer.high_minutes


def test_recent_durations_keep_the_last_hours_finished_services() -> None:
    spells = [ServiceSpell(0, 4), ServiceSpell(50, 53), ServiceSpell(90, 100), ServiceSpell(95, None)]
    assert recent_durations(spells, now=100) == [10, 3]  # latest first; 0-4 ended over an hour ago


def test_active_stations_from_the_calls_of_the_window() -> None:
    named = [ServiceSpell(0, 5, "1"), ServiceSpell(1, 6, "2"), ServiceSpell(6, None, "1")]
    assert active_stations(named, now=10) == 2
    assert active_stations(named, now=10, configured=1) == 1
    unnamed = [ServiceSpell(0, 5), ServiceSpell(1, 3), ServiceSpell(2, 9), ServiceSpell(20, 25)]
    assert active_stations(unnamed, now=30) == 3  # at most three at once (minute 2-3)
    assert active_stations([], now=30, configured=4) == 4  # nothing measured yet: all configured count
    assert active_stations([ServiceSpell(0, 5, "1")], now=200, configured=4) == 4
