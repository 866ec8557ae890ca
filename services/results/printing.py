"""Kiosk printing and patient reading (自助打印、手机/电话查询): released reports, their PDFs, print records.

What a patient channel (kiosk, app, phone) may see is decided by one function, `is_released`; each
print is a `ReportPrint` row numbered per report version, so the second copy of the same version is
a reprint and says 副本 on the paper. Every look and every refusal is audited (`service._audit`);
a report that is not the caller's patient's, not released, or missing is one and the same 404.

The paper names whom it is for (`PaperPatient`: name, sex, age) from the names results keeps off
registration's feed (`consumers.PatientNames`), so printing calls no one; a merged patient's reports
name the surviving patient (the merge re-points them). Patient-facing JSON shows the name masked (张**,
`kit.logging.mask_name`); no identity number is kept or shown anywhere here.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlmodel import Session

from kit.auth import visible_to
from kit.clock import hospital_date
from kit.logging import mask_name
from kit.outbox import record_event
from kit.pdf import PdfDocument, StampLine, TableColumn, stamp
from services.results import repository
from services.results.models import OutboxEvent, Report, ReportPrint
from services.results.release import releasable
from services.results.schemas import (
    DUPLICATE_REASON_ZH,
    DuplicateReason,
    PrintPublic,
    ReleasedReportPublic,
)
from services.results.service import SUBJECT_MAX_LENGTH, _audit

RELEASED_LIST_MAX = 500


def is_released(session: Session, report: Report, *, require_payment: bool) -> bool:
    """Whether a report may reach the patient (kiosk, app, phone): the one release rule,
    `release.releasable` (final or amended/corrected, verified, not withheld, paid where configured)."""
    order = repository.get_order(session, report.order_id)
    return order is not None and releasable(report, order, require_payment=require_payment).released


def report_version(report: Report) -> int:
    """The version a print is of: copies are counted per version, so an amended report prints as an
    original again."""
    return report.version


def released_reports(
    session: Session,
    *,
    patient_id: str,
    client: str,
    limit: int,
    acting_for: str | None,
    require_payment: bool,
) -> list[tuple[Report, int]]:
    """The patient's released reports, newest first, each with the copies already printed of its version;
    audited. Acting for another patient: empty, and audited as `refused`."""
    refused = not visible_to(acting_for, patient_id)
    found = [] if refused else repository.list_patient_reports(session, patient_id, limit=RELEASED_LIST_MAX)
    released = [r for r in found if is_released(session, r, require_payment=require_payment)][:limit]
    copies = repository.printed_copies(session, [r.id for r in released])
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="released_reports",
        outcome="refused" if refused else "found" if released else "empty",
        reports=released,
        patient_id=patient_id,
    )
    return [(r, copies.get((r.id, report_version(r)), 0)) for r in released]


def _shown(
    session: Session, report: Report | None, acting_for: str | None, *, require_payment: bool
) -> tuple[Report | None, str]:
    """The report if the caller may have it, and the audit outcome either way."""
    if report is None:
        return None, "not_found"
    if not visible_to(acting_for, report.patient_id):
        return None, "refused"
    if not is_released(session, report, require_payment=require_payment):
        return None, "not_released"
    return report, "found"


def report_to_read(
    session: Session, *, report_id: str, client: str, acting_for: str | None, require_payment: bool
) -> Report | None:
    """A released report to read as a PDF (an app's download; no print is recorded), audited; None
    for a missing, another patient's or an unreleased report alike. Render it with `render_report`
    once the audit is committed (the router does, outside the transaction)."""
    found = repository.get_report(session, report_id)
    report, outcome = _shown(session, found, acting_for, require_payment=require_payment)
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="read_pdf",
        outcome=outcome,
        reports=[report] if report else [],
        patient_id=found.patient_id if found else acting_for,  # a refusal names whose report it was
        visit_id=found.visit_id if found else None,
        report_id=report_id,
    )
    return report


def _print(
    session: Session, report: Report, *, copies: int, client: str, client_kind: str | None
) -> ReportPrint:
    printed = ReportPrint(
        id=str(uuid.uuid4()),
        report_id=report.id,
        report_version=report_version(report),
        copy_number=copies + 1,
        visit_id=report.visit_id,
        patient_id=report.patient_id,
        client=client[:SUBJECT_MAX_LENGTH],
        client_kind=client_kind,
    )
    session.add(printed)
    record_event(
        session,
        OutboxEvent,
        event_type="report.printed",
        aggregate_type="order",
        aggregate_id=report.order_id,
        visit_id=report.visit_id,
        patient_id=report.patient_id,
        payload={
            "order_id": report.order_id,
            "report_id": report.id,
            "test_code": report.test_code,
            "print_id": printed.id,
            "report_version": printed.report_version,
            "copy_number": printed.copy_number,
        },
    )
    return printed


def printable(session: Session, *, report_id: str, acting_for: str | None, require_payment: bool) -> bool:
    """Whether `print_report` would print (the report exists, is released and is the patient's)."""
    found = repository.get_report(session, report_id)
    return _shown(session, found, acting_for, require_payment=require_payment)[0] is not None


def print_report(
    session: Session,
    *,
    report_id: str,
    client: str,
    client_kind: str | None,
    acting_for: str | None,
    require_payment: bool,
) -> ReportPrint | None:
    """Print one copy of a released report: copy 1 of its version, or the next reprint (副本); audited,
    with `report.printed`. None, audited as refused / not released / not found, otherwise."""
    locked = repository.lock_reports(session, [report_id])
    found = locked[0] if locked else None
    report, outcome = _shown(session, found, acting_for, require_payment=require_payment)
    printed = None
    if report is not None:
        copies = repository.printed_copies(session, [report.id]).get((report.id, report_version(report)), 0)
        printed = _print(session, report, copies=copies, client=client, client_kind=client_kind)
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="print",
        outcome="printed" if printed else outcome,
        reports=[report] if report else [],
        patient_id=found.patient_id if found else acting_for,
        visit_id=found.visit_id if found else None,
        report_id=report_id,
    )
    return printed


def print_visit(
    session: Session,
    *,
    visit_id: str,
    client: str,
    client_kind: str | None,
    acting_for: str | None,
    require_payment: bool,
) -> list[ReportPrint]:
    """Print every released report of a visit (a slip's) whose version was never printed, oldest first;
    audited, one `report.printed` each. Nothing left to print is an empty list; acting for another
    patient too (audited as `refused`)."""
    reports = repository.list_visit_reports(session, visit_id, limit=RELEASED_LIST_MAX)
    patient_id = reports[0].patient_id if reports else repository.patient_of_visit(session, visit_id)
    refused = patient_id is not None and not visible_to(acting_for, patient_id)
    released = (
        [] if refused else [r for r in reports if is_released(session, r, require_payment=require_payment)]
    )
    locked = repository.lock_reports(session, [r.id for r in released])
    copies = repository.printed_copies(session, [r.id for r in locked])
    unprinted = [r for r in locked if (r.id, report_version(r)) not in copies]
    unprinted.sort(key=lambda r: (r.reported_at, r.id))
    prints = [_print(session, r, copies=0, client=client, client_kind=client_kind) for r in unprinted]
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="print_visit",
        outcome="refused" if refused else "printed" if prints else "empty",
        reports=unprinted,
        patient_id=patient_id,
        visit_id=visit_id,
    )
    return prints


def printed_copy(
    session: Session, *, print_id: str, client: str, acting_for: str | None, require_payment: bool
) -> tuple[Report, ReportPrint] | None:
    """One printed copy and its report, to render as its PDF (fetching it again prints nothing new),
    audited; None when there is no such print, it is another patient's, or its report is no longer
    released: a copy printed before the doctor withheld or the lab cancelled the report is no way
    around the hold (audited as `not_released`)."""
    printed = repository.get_print(session, print_id)
    report = repository.get_report(session, printed.report_id) if printed else None
    refused = printed is not None and not visible_to(acting_for, printed.patient_id)
    held_back = (
        report is not None
        and not refused
        and not is_released(session, report, require_payment=require_payment)
    )
    shown = None if refused or held_back or printed is None else report
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="print_pdf",
        outcome="refused" if refused else "not_released" if held_back else "found" if shown else "not_found",
        reports=[shown] if shown else [],
        patient_id=printed.patient_id if printed else acting_for,
        visit_id=printed.visit_id if printed else None,
        report_id=printed.report_id if printed else None,
    )
    return (shown, printed) if shown and printed else None


@dataclass(frozen=True, slots=True)
class PaperPatient:
    """Who a report is for, as its paper says: registration's name, sex and birth date (`PatientName`)."""

    name: str | None
    sex: str | None = None
    birth_date: date | None = None
    identified: bool = True


def paper_patients(session: Session, reports: Sequence[Report]) -> dict[str, PaperPatient]:
    """The known patients of these reports, by patient id (read in the lookup's session, so rendering
    after the commit needs nothing more); a patient results has not learned yet is missing."""
    found = repository.patient_names(session, [r.patient_id for r in reports])
    return {
        patient_id: PaperPatient(row.name, row.sex, row.birth_date, row.identified)
        for patient_id, row in found.items()
    }


def paper_patient(session: Session, report: Report) -> PaperPatient | None:
    return paper_patients(session, [report]).get(report.patient_id)


def released_public(report: Report, copies: int, patient: PaperPatient | None = None) -> ReleasedReportPublic:
    return ReleasedReportPublic.model_validate(
        {
            **report.model_dump(),
            "version": report_version(report),
            "printed_copies": copies,
            "patient_name_masked": mask_name(patient.name) if patient and patient.name else None,
        }
    )


def print_public(printed: ReportPrint) -> PrintPublic:
    return PrintPublic(
        **printed.model_dump(exclude={"client_kind"}),
        is_copy=printed.copy_number > 1,
        pdf_url=f"/v1/prints/{printed.id}/pdf",
    )


# --- the paper ---

STATUS_ZH = {"final": "正式报告", "preliminary": "初步报告"}
SEX_ZH = {"male": "男 M", "female": "女 F"}
UNIDENTIFIED = "无名氏 (unidentified)"
NOT_KNOWN = "-"  # results has not learned the patient's name from registration's feed yet
FLAG_ZH = {"H": "偏高 H", "L": "偏低 L", "N": "", "critical": "危急值"}
COLUMNS = (
    TableColumn("项目 Item", 2.2),
    TableColumn("结果 Result", 1.2, "RIGHT"),
    TableColumn("单位 Unit", 1.2),
    TableColumn("参考范围 Range", 1.5),
    TableColumn("提示 Flag", 1.0),
)


MARK_CHARACTERS = "副本第份打印时间"  # every non-ASCII character of `print_marks`: one font cut for all


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(birth_date: date, on: datetime) -> int:
    """Whole years on the hospital day of `on` (周岁)."""
    day = hospital_date(on)
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def _patient_fields(patient: PaperPatient | None, reported_at: datetime) -> list[tuple[str, str]]:
    """The patient block: name (无名氏 for an unidentified patient), and sex and age where known."""
    if patient is None:
        return [("姓名 Name", NOT_KNOWN)]
    fields = [("姓名 Name", patient.name or (UNIDENTIFIED if not patient.identified else NOT_KNOWN))]
    if patient.sex:
        fields.append(("性别 Sex", SEX_ZH.get(patient.sex, patient.sex)))
    if patient.birth_date:
        fields.append(("年龄 Age", f"{_age(patient.birth_date, reported_at)} 岁"))
    return fields


def render_report(
    report: Report, *, printed: ReportPrint | None = None, patient: PaperPatient | None = None
) -> bytes:
    """The report on A4: whom it is for (`patient`: name, sex, age), header, observations with units and
    reference ranges, conclusion; for a print, its marks stamped on (`stamp_print`). Deterministic for
    the same report version, patient and print."""
    paper = render_paper(report, patient)
    return paper if printed is None else stamp_print(paper, printed)


def render_paper(report: Report, patient: PaperPatient | None = None) -> bytes:
    """The report itself, without print marks: what `renderings` stores once per report version and
    patient, and what an app reads."""
    document = PdfDocument(title="检查检验报告单 Report", created_at=report.reported_at)
    document.fields(
        [
            *_patient_fields(patient, report.reported_at),
            ("项目 Test", f"{report.test_name} ({report.test_code})"),
            ("状态 Status", STATUS_ZH.get(report.status, report.status)),
            ("报告时间 Reported", _when(report.reported_at)),
            ("报告编号 Report", report.id),
            ("就诊编号 Visit", report.visit_id),
        ]
    )
    document.gap()
    rows = [
        [
            f"{o.get('name', '')} {o.get('code', '')}",
            str(o.get("value", "")),
            str(o.get("unit") or ""),
            str(o.get("reference_range") or ""),
            FLAG_ZH.get(str(o.get("flag") or ""), ""),
        ]
        for o in report.observations
    ]
    if rows:
        document.table(COLUMNS, rows)
        document.gap()
    document.line(f"结论 Conclusion: {report.conclusion}")
    document.gap()
    if report.performing_institution_name:
        document.line(f"检查机构 Performed by: {report.performing_institution_name}", size=8)
    if report.duplicate_reason:
        # 互认: the patient sees why a test a recognised result answered was done again.
        reason = DUPLICATE_REASON_ZH.get(DuplicateReason(report.duplicate_reason), report.duplicate_reason)
        document.line(f"重复检查原因 Repeated because: {reason} ({report.duplicate_reason})", size=8)
    return document.to_bytes()


def print_marks(printed: ReportPrint) -> list[StampLine]:
    """What a print adds to the paper: a reprint says 副本 at the top, every print its time and copy
    number at the foot of the last page. Stamped on, so a print never renders the report again."""
    number = printed.copy_number
    when = StampLine(f"打印时间 Printed: {_when(printed.printed_at)}  第 {number} 份", y=-8, last_page=True)
    if number == 1:
        return [when]
    return [StampLine(f"副本 COPY - 第 {number} 份 (copy {number})", y=7, size=12), when]


def stamp_print(paper: bytes, printed: ReportPrint) -> bytes:
    """The paper of one print: `paper` (`render_paper`) with the print's marks, dated when printed."""
    return stamp(paper, print_marks(printed), created_at=printed.printed_at, characters=MARK_CHARACTERS)
