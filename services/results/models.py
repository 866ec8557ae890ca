"""Results tables."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from kit.idempotency import IdempotencyRecordBase
from kit.merges import MergedVisitBase
from kit.models import (
    BigIntId,
    ConsumedEventBase,
    FeedCursorBase,
    OutboxEventBase,
    Timestamp,
    UTCDateTime,
    new_registry,
)


class ResultsTable(SQLModel, registry=new_registry()):
    """Base of every results table (its own metadata)."""


class OrderableTest(ResultsTable, table=True):
    """A lab or imaging test results can run; `code` is billing's price-catalogue code. Seeded at start."""

    __tablename__ = "orderable_test"

    code: str = Field(primary_key=True, max_length=16)
    name_zh: str = Field(max_length=64)
    name_en: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    specimen: str | None = Field(default=None, max_length=32)
    turnaround_minutes: int
    # Mutual recognition (互认): whether the item takes part, and how long a result of it stands.
    recognised: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    validity_days: int | None = None


class LabOrder(ResultsTable, table=True):
    """A test ordered for a visit (检查检验申请单); `prepay` orders wait for payment before the lab starts."""

    __tablename__ = "lab_order"
    # The overdue list and check: with the lab (status `released`), by due time.
    __table_args__ = (Index("ix_lab_order_status_due_at", "status", "due_at"),)

    id: str = Field(primary_key=True, max_length=36)
    visit_id: str = Field(index=True, max_length=36)
    patient_id: str = Field(index=True, max_length=36)
    test_code: str = Field(foreign_key="orderable_test.code", max_length=16)
    test_name: str = Field(max_length=64)
    payment_mode: str = Field(max_length=16)
    status: str = Field(index=True, max_length=16)
    ordered_by: str | None = Field(default=None, max_length=64)
    ordered_at: datetime = Timestamp()
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # While awaiting payment, why (`PaymentHold`): prepay, or a settle-later charge past the credit limit.
    hold_reason: str | None = Field(default=None, max_length=16)
    # The visit's department when ordered: critical values go there (None on orders before 0007).
    department: str | None = Field(default=None, max_length=32)
    # When billing's `charge.paid` for this order was read: a hospital may release reports only then.
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Ordered although a recognised result existed (互认): the reason from the fixed list, and a note.
    duplicate_reason: str | None = Field(default=None, index=True, max_length=32)
    duplicate_note: str | None = Field(default=None, max_length=500)
    # Turnaround (turnaround.py). `released_at` above is the payment gate's release to the lab, not a
    # report's release to the patient. Priority and target are fixed when ordered, so figures never move
    # with a later setting; orders before 0009 have no target and are left out of TAT figures.
    priority: str = Field(default="routine", max_length=16, sa_column_kwargs={"server_default": "routine"})
    target_minutes: int | None = None
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    collected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # specimen taken (采样)
    received_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the lab has it (签收)
    reported_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # first final report
    # Released to the patient: the first moment a report of the order passed the release rule
    # (`Report.releasable_at`; None before 0012, and while none has).
    releasable_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    overdue_notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # `order.overdue` sent


class Report(ResultsTable, table=True):
    """The report on an order (检验/检查报告), one per order, through its lifecycle (`ReportStatus`); ids
    are random so they can't be guessed. A LIS/PACS names its reports by `(source_client, external_id)`,
    unique, so a repeated or racing post of the same report finds this row instead of adding one."""

    __table_args__ = (
        UniqueConstraint("source_client", "external_id", name="uq_report_source_client_external_id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    order_id: str = Field(foreign_key="lab_order.id", index=True, max_length=36)
    visit_id: str = Field(index=True, max_length=36)
    patient_id: str = Field(index=True, max_length=36)
    test_code: str = Field(max_length=16)
    test_name: str = Field(max_length=64)
    status: str = Field(max_length=16)
    conclusion: str = Field(max_length=2000)
    observations: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    # A critical value (危急值) must reach a clinician at once: it also raises `report.critical`.
    critical: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    critical_note: str | None = Field(default=None, max_length=500)
    reported_by: str = Field(max_length=64)
    reported_at: datetime = Timestamp(index=True)
    # The technician who verified (审核) it; an unverified report never reaches a patient.
    verified_by: str | None = Field(default=None, max_length=64)
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A doctor withheld it from the patient (暂缓发布); the actions are in `report_hold_action`.
    withheld: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    source_client: str | None = Field(default=None, max_length=64)
    external_id: str | None = Field(default=None, max_length=64)
    # Who performed it, and their grade (互认); set to this hospital's own when the report is first
    # posted (None on reports from before 0010: this hospital's too).
    performing_institution_code: str | None = Field(default=None, max_length=32)
    performing_institution_name: str | None = Field(default=None, max_length=64)
    institution_level: str | None = Field(default=None, max_length=16)
    # The order's duplicate reason, shown to the patient with the report.
    duplicate_reason: str | None = Field(default=None, max_length=32)
    # The first moment the release rule (`release.releasable`) passed: an amendment, a later hold or a
    # cancellation keeps it (None until then, and on reports released before 0012: not recorded).
    releasable_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PatientName(ResultsTable, table=True):
    """Who a report is for, as printed on it: registration's patient name, sex and birth date, kept from
    its feed (`consumers.PatientNames`), so printing asks no one and works while registration is down.
    Registration's events carry no names (docs/events.md): the feed's `resolve` hook asks for them."""

    __tablename__ = "patient_name"

    patient_id: str = Field(primary_key=True, max_length=36)
    identified: bool
    name: str | None = Field(default=None, max_length=100)
    sex: str | None = Field(default=None, max_length=8)
    birth_date: date | None = None
    updated_at: datetime = Timestamp()


class ExternalResult(ResultsTable, table=True):
    """A result received from another hospital (外院结果) for mutual recognition, named by that hospital
    and its own id: a repeat of the same pair updates this row, never adds one."""

    __tablename__ = "external_result"
    __table_args__ = (
        UniqueConstraint(
            "institution_code", "external_id", name="uq_external_result_institution_code_external_id"
        ),
        Index("ix_external_result_patient_test", "patient_id", "test_code", "performed_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    external_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=36)
    test_code: str = Field(max_length=16)
    performed_at: datetime = Field(sa_type=UTCDateTime)
    institution_code: str = Field(max_length=32)
    institution_name: str = Field(max_length=64)
    institution_level: str = Field(max_length=16)
    conclusion: str = Field(max_length=2000)
    observations: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    verified_by: str = Field(max_length=64)
    source_client: str = Field(max_length=64)
    received_at: datetime = Timestamp()


class ReportRevision(ResultsTable, table=True):
    """A report's content as it was before a change (append-only): what an earlier reader saw."""

    __tablename__ = "report_revision"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=36)
    version: int
    status: str = Field(max_length=16)
    conclusion: str = Field(max_length=2000)
    observations: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    critical: bool
    verified_by: str | None = Field(default=None, max_length=64)
    reported_by: str = Field(max_length=64)
    reported_at: datetime = Field(sa_type=UTCDateTime)
    replaced_at: datetime = Timestamp()
    reason: str | None = Field(default=None, max_length=500)


class ReportHoldAction(ResultsTable, table=True):
    """A doctor withholding a report from the patient, or lifting that, and why (append-only)."""

    __tablename__ = "report_hold_action"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=36)
    action: str = Field(max_length=16)  # withhold | unwithhold
    reason: str = Field(max_length=500)
    client: str = Field(max_length=64)
    at: datetime = Timestamp()


class CriticalValue(ResultsTable, table=True):
    """One critical value (危急值) of a report, sent to the ordering department, until a clinician
    acknowledges it; escalated once if nobody has in time. One per report and observation code
    (`""` for a report flagged critical as a whole), so a report posted again raises nothing twice."""

    __tablename__ = "critical_value"
    __table_args__ = (
        UniqueConstraint(
            "report_id", "observation_code", name="uq_critical_value_report_id_observation_code"
        ),
        Index("ix_critical_value_pending", "acknowledged_at", "raised_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    report_id: str = Field(foreign_key="report.id", max_length=36)
    order_id: str = Field(max_length=36)
    visit_id: str = Field(max_length=36)
    patient_id: str = Field(index=True, max_length=36)
    department: str | None = Field(default=None, max_length=32)
    test_code: str = Field(max_length=16)
    observation_code: str = Field(max_length=32)
    value: str | None = Field(default=None, max_length=64)
    unit: str | None = Field(default=None, max_length=32)
    raised_at: datetime = Timestamp()
    escalated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: str | None = Field(default=None, max_length=64)
    acknowledged_client: str | None = Field(default=None, max_length=64)
    acknowledgement_note: str | None = Field(default=None, max_length=500)


class ResultAccess(ResultsTable, table=True):
    """One audited look at results (who, what, whose, what came back), append-only."""

    __tablename__ = "result_access"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    at: datetime = Timestamp()
    client: str = Field(max_length=64)
    action: str = Field(max_length=32)
    patient_id: str | None = Field(default=None, index=True, max_length=36)
    visit_id: str | None = Field(default=None, index=True, max_length=36)
    report_id: str | None = Field(default=None, max_length=36)
    report_ids: list[str] = Field(default_factory=list, sa_type=JSON)
    outcome: str = Field(max_length=16)
    request_id: str | None = Field(default=None, max_length=64)
    # The patient an app or kiosk acted for (its patient token), when it was not staff looking.
    acting_for: str | None = Field(default=None, max_length=64)
    # The gateway client's kind (`kiosk`, `app`, `phone`, `his`, ...), and where the request came from
    # (the X-Forwarded-For chain the gateway passes: the client's address last).
    client_kind: str | None = Field(default=None, max_length=16)
    source_address: str | None = Field(default=None, max_length=255)


class ReportPrint(ResultsTable, table=True):
    """One printed copy of one version of a report (自助打印): copy 1 is the original, later ones are
    reprints, marked 副本 on the paper. Ids are random: `GET /prints/{id}/pdf` must not be guessable."""

    __tablename__ = "report_print"
    __table_args__ = (UniqueConstraint("report_id", "report_version", "copy_number"),)

    id: str = Field(primary_key=True, max_length=36)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=36)
    report_version: int
    copy_number: int
    visit_id: str = Field(index=True, max_length=36)
    patient_id: str = Field(index=True, max_length=36)
    client: str = Field(max_length=64)
    client_kind: str | None = Field(default=None, max_length=16)
    printed_at: datetime = Timestamp()


class ReportRendering(ResultsTable, table=True):
    """One version of a report rendered as its PDF paper, without print marks (`printing.render_paper`),
    stored so a print stamps its marks on instead of rendering the report again (`renderings.py`).

    Keyed by report and version: an amendment or correction is a new version, so the old paper is
    never found for it. `source_digest` is of the whole report row as rendered: a change that keeps
    the version (a merge, a field added to the paper later) is never served either."""

    __tablename__ = "report_rendering"

    report_id: str = Field(foreign_key="report.id", primary_key=True, max_length=36)
    report_version: int = Field(primary_key=True)
    source_digest: str = Field(max_length=64)
    pdf: bytes = Field(sa_type=LargeBinary)
    rendered_at: datetime = Timestamp(index=True)


class MergedVisit(MergedVisitBase, ResultsTable, table=True):
    """A visit registration moved to another patient by a merge (身份确认后合并), as read from its feed.

    Orders placed for the visit afterwards name this patient, even when the visit was asked of
    registration just before the merge (see `repository.patient_for_visit`).
    """

    __tablename__ = "merged_visit"


class OutboxEvent(OutboxEventBase, ResultsTable, table=True):
    __tablename__ = "outbox_event"


class FeedCursor(FeedCursorBase, ResultsTable, table=True):
    __tablename__ = "feed_cursor"


class ConsumedEvent(ConsumedEventBase, ResultsTable, table=True):
    __tablename__ = "consumed_event"


class IdempotencyRecord(IdempotencyRecordBase, ResultsTable, table=True):
    __tablename__ = "idempotency_record"
