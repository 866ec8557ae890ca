"""Inpatient days: billing's view of each stay (from registration's `visit.admitted`, `.transferred`,
`.discharged`) and the nightly job that posts every stay's bed fee (床位费) and nursing fee (护理费).

Which days are owed follows the hospital's rule of counting nights (算入不算出): day D is owed when the
patient was still in a bed at the end of D (for today: now); a stay admitted and discharged on the same
day owes that one day. Each day is priced by the class of the bed the patient lay in at the end of it,
at the catalogue price of that date (`priced_item`), and named after that bed's ward department.

Why a re-run never doubles a charge: each posted day is an `InpatientDay` row keyed (stay, kind, date)
— kind is `bed` or `nursing`, so a transfer day with two beds is still one bed-day — and the job looks
at a stay's posted days only after locking its account, the lock every money change to that visit
takes. Two runs racing on PostgreSQL queue on that lock and the second finds the days posted; on
SQLite writers are serialised anyway. A missed night needs nothing special: every run posts, for every
stay, each owed day up to its date that is not yet posted (within `CATCH_UP_DAYS`).
"""

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from kit.clock import HOSPITAL_TZ, as_utc, hospital_date, utcnow
from kit.database import Database
from kit.worker import ThreadWorker
from services.billing import repository
from services.billing.catalogue import Price, price_on
from services.billing.config import BillingSettings
from services.billing.errors import ChargeRefused, InvalidRunDate
from services.billing.models import (
    BillingStay,
    InpatientDay,
    RejectedCharge,
    StayBed,
    VisitAccount,
)
from services.billing.schemas import ChargeOrigin, InpatientDaysRunPublic
from services.billing.service.accounts import SETTLED, instant
from services.billing.service.charges import add_charge, record_refusal, well_formed
from services.billing.service.deposits import check_low_balance

logger = logging.getLogger("patientflow.billing")
STAY_EVENTS = frozenset({"visit.admitted", "visit.transferred", "visit.discharged"})
BED, NURSING = "bed", "nursing"
CATCH_UP_DAYS = 31  # a run looks this far back for unposted days (a stay discharged before is done)
CHUNK = 250  # stays per transaction: a long run never holds thousands of account locks at once
_DAY_KEYS = uuid.UUID("5b1f9c52-7a4e-4f0e-9b7e-2f1d1a0c6e11")


def priced_item(session: Session, code: str, on: date) -> Price | None:
    """The item `code` at the ward's price on the day of stay `on` (价格按服务日期), or None when the
    catalogue in force prices it on no period covering that day."""
    return price_on(session, code=code, day=on)


def day_start(day: date) -> datetime:
    """The hospital day's first instant, in UTC."""
    return as_utc(datetime.combine(day, time.min, tzinfo=HOSPITAL_TZ))


# --- registration's stay events -------------------------------------------------------------------------


def apply_stay_event(session: Session, event: dict[str, Any]) -> None:
    """Keep billing's copy of the stay: admission and transfers add the bed lain in from then on,
    discharge ends it. Replays change nothing (a bed row per event id)."""
    visit_id = well_formed(event.get("visit_id"))
    if visit_id is None or repository.get_account(session, visit_id) is None:
        return  # the account is opened from visit.opened, earlier in the same feed
    at = instant(event["occurred_at"])
    stay = repository.get_stay(session, visit_id)
    if event["type"] == "visit.discharged":
        if stay is not None and stay.discharged_at is None:
            stay.discharged_at = at
            session.add(stay)
        return
    if stay is None:
        stay = BillingStay(visit_id=visit_id, patient_id=str(event.get("patient_id")), admitted_at=at)
        session.add(stay)
        session.flush()
    if repository.stay_bed_for_event(session, event["id"]) is not None:
        return
    data = event["data"]
    session.add(
        StayBed(
            visit_id=visit_id,
            from_at=at,
            ward_code=str(data.get("ward") or "")[:32],
            bed_code=str(data.get("bed") or "")[:32],
            bed_class=str(data.get("bed_class") or "general")[:16],
            department=str(data.get("department") or "")[:32],
            source_event_id=event["id"],
        )
    )


# --- the job ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayItems:
    """The catalogue item of each kind of day by bed class (settings `bed_class_items`, …)."""

    bed: Mapping[str, str]
    nursing: Mapping[str, str]

    @classmethod
    def of(cls, settings: BillingSettings) -> "DayItems":
        return cls(bed=settings.bed_class_items, nursing=settings.nursing_class_items)

    def code(self, kind: str, bed_class: str) -> str | None:
        table = self.bed if kind == BED else self.nursing
        return table.get(bed_class) or table.get("general")


def owed_days(stay: BillingStay, *, up_to: date, today: date) -> list[date]:
    """The days the stay owes up to `up_to` (see the module docstring), oldest first."""
    admitted = hospital_date(as_utc(stay.admitted_at))
    first = max(admitted, up_to - timedelta(days=CATCH_UP_DAYS))
    if stay.discharged_at is None:
        last = min(up_to, today)
    else:
        discharged = hospital_date(as_utc(stay.discharged_at))
        last = min(up_to, admitted if discharged == admitted else discharged - timedelta(days=1))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def bed_at(beds: Sequence[StayBed], moment: datetime) -> StayBed | None:
    """The bed lain in at `moment`: the latest placement at or before it (else the first one)."""
    placed = [bed for bed in beds if as_utc(bed.from_at) <= moment]
    return placed[-1] if placed else (beds[0] if beds else None)


def day_key(visit_id: str, kind: str, day: date) -> str:
    """A stable id per (stay, kind, date): the charge's `source_event_id`, unique in the database."""
    return str(uuid.uuid5(_DAY_KEYS, f"{visit_id}/{kind}/{day.isoformat()}"))


def post_stay_days(
    session: Session,
    stay: BillingStay,
    beds: Sequence[StayBed],
    *,
    account: VisitAccount,
    done: set[tuple[str, str, date]],
    up_to: date,
    today: date,
    items: DayItems,
    prices: dict[tuple[str, date], Price | None] | None = None,
) -> tuple[int, int]:
    """Post the stay's owed days not in `done` (read after its account was locked); (posted, refused).
    `prices`: the run's memo of `priced_item` (the catalogue does not change during a run)."""
    prices = {} if prices is None else prices
    if not beds:
        return 0, 0
    posted = refused = 0
    for day in owed_days(stay, up_to=up_to, today=today):
        moment = day_start(day + timedelta(days=1))
        if stay.discharged_at is not None:
            moment = min(moment, as_utc(stay.discharged_at))
        bed = bed_at(beds, moment)
        assert bed is not None
        for kind in (BED, NURSING):
            if (stay.visit_id, kind, day) in done:
                continue
            code = items.code(kind, bed.bed_class)
            if code and (code, day) not in prices:
                prices[code, day] = priced_item(session, code, day)
            price = prices[code, day] if code else None
            key = day_key(stay.visit_id, kind, day)
            if price is None:
                refused += _refuse(session, key=key, visit_id=stay.visit_id, code=code)
                continue
            item = price.item
            try:
                charge = add_charge(
                    session,
                    account=account,
                    item=item,
                    quantity=1,
                    origin=ChargeOrigin.inpatient_day,
                    service_date=day,
                    source_event_id=key,
                    note=f"{bed.ward_code}-{bed.bed_code}",
                    supplementary=account.status == SETTLED,  # a day caught up after settlement: 补费
                    price_entry_id=price.entry_id,
                    check_balance=False,  # once for the stay, below
                    department=bed.department,  # the ward's
                )
            except ChargeRefused as refusal:  # e.g. that day's bed already charged by hand: never twice
                if _refuse(session, key=key, visit_id=stay.visit_id, code=code, reason=refusal.reason):
                    record_refusal(session, refusal, source="inpatient_days")
                    refused += 1
                continue
            session.add(
                InpatientDay(
                    visit_id=stay.visit_id,
                    kind=kind,
                    service_date=day,
                    charge_id=charge.id,
                    item_code=item.code,
                    department=bed.department,
                )
            )
            posted += 1
    if posted and account.low_balance_threshold_fen is not None:
        session.flush()
        check_low_balance(session, account)
    return posted, refused


def post_chunk(
    session: Session, visit_ids: Sequence[str], *, up_to: date, today: date, items: DayItems
) -> tuple[int, int]:
    """One transaction's stays: their accounts locked first (in id order, so two runs never deadlock),
    then their posted days read — after the lock, so a twin run's days are seen — and the rest posted."""
    accounts = repository.lock_accounts(session, visit_ids)
    stays = repository.stays_of(session, visit_ids)
    beds: dict[str, list[StayBed]] = {}
    for bed in repository.beds_of_stays(session, visit_ids):
        beds.setdefault(bed.visit_id, []).append(bed)
    done = repository.posted_days(session, visit_ids)
    prices: dict[tuple[str, date], Price | None] = {}
    posted = refused = 0
    for visit_id in visit_ids:
        if visit_id not in accounts or visit_id not in stays:
            continue
        stay_posted, stay_refused = post_stay_days(
            session,
            stays[visit_id],
            beds.get(visit_id, []),
            account=accounts[visit_id],
            done=done,
            up_to=up_to,
            today=today,
            items=items,
            prices=prices,
        )
        posted, refused = posted + stay_posted, refused + stay_refused
    return posted, refused


def post_before_settlement(session: Session, account: VisitAccount, *, items: DayItems) -> int:
    """Post the stay's owed days the nightly job has not yet posted, so a discharge settlement at any
    hour — before that night's run, or a stay admitted and discharged today — bills every day on its
    invoice instead of leaving them for a supplementary bill (补费). A stay not yet discharged owes up
    to yesterday, as the job would post (today may yet be its discharge day, which is not counted).
    The account is already locked by the settlement; the days are keyed like the job's: never twice."""
    stay = repository.get_stay(session, account.visit_id)
    if stay is None:
        return 0
    today = hospital_date(utcnow())
    up_to = today if stay.discharged_at is not None else today - timedelta(days=1)
    posted, _ = post_chunk(session, [account.visit_id], up_to=up_to, today=today, items=items)
    return posted


def _refuse(
    session: Session, *, key: str, visit_id: str, code: str | None, reason: str = "unknown-item"
) -> int:
    """A day not posted — its item unpriced on that day, or refused by a charging rule: recorded once
    for the cashier, never invented."""
    if repository.rejection_for_event(session, key) is not None:
        return 0
    session.add(
        RejectedCharge(event_id=key, source="billing", visit_id=visit_id, item_code=code, reason=reason)
    )
    logger.warning("inpatient day of visit %s not posted: %s (%s)", visit_id, code, reason)
    return 1


def check_run_date(day: date, *, today: date) -> None:
    if day > today:
        raise InvalidRunDate(f"Days are posted up to today ({today.isoformat()}) at the latest.")


def run_inpatient_days(
    database: Database, *, up_to: date, items: DayItems, now: datetime | None = None
) -> InpatientDaysRunPublic:
    """Post every stay's owed days up to `up_to`, a chunk of stays per transaction. Idempotent."""
    today = hospital_date(now or utcnow())
    check_run_date(up_to, today=today)
    earliest = day_start(up_to - timedelta(days=CATCH_UP_DAYS))
    with database.session(write=False) as session:
        stays = [
            stay.visit_id
            for stay in repository.stays_owing_days(session, day_start(up_to + timedelta(days=1)))
            if stay.discharged_at is None or as_utc(stay.discharged_at) >= earliest
        ]
    posted = refused = 0
    for offset in range(0, len(stays), CHUNK):
        with database.session() as session:
            done, failed = post_chunk(
                session, stays[offset : offset + CHUNK], up_to=up_to, today=today, items=items
            )
        posted, refused = posted + done, refused + failed
    if posted or refused:
        logger.info("inpatient days up to %s: %d posted, %d refused", up_to, posted, refused)
    return InpatientDaysRunPublic(date=up_to, stays=len(stays), posted=posted, refused=refused)


class NightlyJob(ThreadWorker):
    """Every `every_seconds`: post the days up to yesterday (catching up missed nights), then `after`
    (the daily bills of yesterday). The clock is injectable for tests."""

    def __init__(
        self,
        database: Database,
        *,
        items: DayItems,
        every_seconds: float,
        after: Callable[[date], object] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__("billing-inpatient-days")
        self.database, self.items, self.every_seconds = database, items, every_seconds
        self.after, self.clock = after, clock

    def run_once(self) -> InpatientDaysRunPublic:
        yesterday = hospital_date(self.clock()) - timedelta(days=1)
        result = run_inpatient_days(self.database, up_to=yesterday, items=self.items, now=self.clock())
        if self.after is not None:
            self.after(yesterday)
        return result

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the job: the next round catches up
                logger.exception("the inpatient-days job failed; retrying")
            self.stopping.wait(self.every_seconds)
