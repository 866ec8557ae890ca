"""Registration endpoints (thin: parse, call the service, shape the answer)."""

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlmodel import Session

from kit.auth import Caller, CallerDep, require_scope, require_service_caller
from kit.config import app_settings
from kit.database import ReadAccess, SessionDep, read_access
from kit.errors import BadRequest, Conflict, Forbidden, UnprocessableContent, problem_responses
from kit.idempotency import IdempotencyKeyHeader, checked_key, idempotent
from kit.params import page_size
from services.registration import appointments, disruptions, patient_index, proofs, schedules, service
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    AppointmentNotFound,
    AppointmentStateConflict,
    BookingConflict,
    BookingRefused,
    CheckInRefused,
    ClinicSessionNotFound,
    DepartmentNotFound,
    DisruptionInvalid,
    DisruptionRefused,
    DoctorNotFound,
    DuplicateCard,
    DuplicateDepartment,
    DuplicatePatient,
    IdentityMismatch,
    InvalidIdNumber,
    InvalidSearch,
    MergeRefused,
    NoSuchSlot,
    PatientMerged,
    PatientNotFound,
    RebookingOfferClosed,
    RebookingOfferNotFound,
    ScheduleRefused,
    TemplateNotFound,
    VisitNotFound,
    VisitRefused,
)
from services.registration.models import IdempotencyRecord
from services.registration.notifier import Notifier, build_notifier
from services.registration.repository import (
    list_appointments,
    list_clinic_sessions,
    list_departments,
    list_doctors,
    list_session_attempts,
    list_templates,
    list_visits,
)
from services.registration.schemas import (
    CARD_NUMBER_PATTERN,
    PHONE_PATTERN,
    AppointmentAnswer,
    AppointmentCreate,
    AppointmentPublic,
    AppointmentStatus,
    CancelReason,
    CancelRequest,
    ChallengeRequest,
    Channel,
    CheckInRequest,
    ClinicSessionPublic,
    CodeProof,
    DepartmentCreate,
    DepartmentPublic,
    DisruptionCreate,
    DisruptionPublic,
    DoctorCreate,
    DoctorPublic,
    ExceptionCreate,
    ExceptionPublic,
    GenerateRequest,
    GenerateResult,
    MergePublic,
    MergeRequest,
    OfferDecisionAnswer,
    PatientCreate,
    PatientPage,
    PatientPublic,
    PatientUpdate,
    PaymentMode,
    ProofCheck,
    ProofVerdict,
    RebookingOfferPublic,
    SessionAttemptPublic,
    SessionCreate,
    SessionSlots,
    SlipPublic,
    SlipRequest,
    TemplateCreate,
    TemplatePublic,
    VisitCreate,
    VisitOpened,
    VisitPublic,
    VisitWithName,
)

router = APIRouter()
SettingsDep = Annotated[RegistrationSettings, Depends(app_settings)]
# The gateway asks for patient-session proofs with this scope; no route of its table needs it, so no
# client key can hold it, and a client's forwarded call can never reach these routes.
PROOF_SCOPE = "registration:patient-proof"


async def require_proof_caller(caller: Annotated[Caller, Depends(require_service_caller)]) -> Caller:
    """Only the gateway (a service caller with PROOF_SCOPE) checks proofs and asks for codes."""
    if PROOF_SCOPE not in caller.scopes:
        raise Forbidden("Only the gateway may check patient-session proofs.")
    return caller


def notifier(request: Request) -> Notifier:
    """The app's notifier, built from its settings on first use (tests may set `app.state.notifier`)."""
    state = request.app.state
    if getattr(state, "notifier", None) is None:
        state.notifier = build_notifier(state.settings)
    found: Notifier = state.notifier
    return found


ProofCallerDep = Annotated[Caller, Depends(require_proof_caller)]
# The kit's page cap for lists a desk pages through (the gateway's own cap is the same by default).
SEARCH_PAGE_MAX = 100
NotifierDep = Annotated[Notifier, Depends(notifier)]


@router.post(
    "/patients",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["patients"],
    responses=problem_responses(InvalidIdNumber, IdentityMismatch, DuplicatePatient, DuplicateCard),
)
def register_patient(data: PatientCreate, session: SessionDep, response: Response) -> PatientPublic:
    """Register a patient by resident identity number, or an unidentified emergency patient.

    The identity number is validated with its GB 11643 check character; a `birth_date` or `sex` it
    contradicts is 422 `birth-date-mismatch` / `sex-mismatch` naming the `field`. The patient gets the
    medical card given (`card_number`) or a newly issued one. A number or card already on file answers
    409 with `existing_patient_id`.
    """
    patient = service.register_patient(session, data=data)
    response.headers["Location"] = f"/v1/patients/{patient.id}"
    return service.to_public(patient)


@router.get(
    "/patients",
    dependencies=[require_scope("registration:read")],
    tags=["patients"],
    responses=problem_responses(InvalidSearch),
)
def search_patients(
    session: SessionDep,
    caller: CallerDep,
    id_number: Annotated[str | None, Query(max_length=32, description="Exact, after normalising")] = None,
    card_number: Annotated[str | None, Query(pattern=CARD_NUMBER_PATTERN, description="Exact")] = None,
    phone: Annotated[str | None, Query(pattern=PHONE_PATTERN, description="Exact")] = None,
    name: Annotated[str | None, Query(max_length=100, description="By prefix (张 finds 张三)")] = None,
    after: Annotated[str | None, Query(max_length=36, description="`next_after` of the page before")] = None,
    limit: Annotated[int, page_size(SEARCH_PAGE_MAX)] = 20,
) -> PatientPage:
    """Find patients by identity number, medical-card number, phone or name (患者索引); several keys must
    all match. For staff desks only, never for a client acting for a patient.

    The identity number is always masked in the answer; the name and phone are masked or in full by the
    caller's client kind (`masked` says which). A bad key is 400 naming the key, never repeating it.
    """
    query = patient_index.PatientQuery(id_number=id_number, card_number=card_number, phone=phone, name=name)
    found, next_after = patient_index.search(session, query=query, after=after, limit=limit)
    return PatientPage(
        patients=[patient_index.to_hit(p, kind=caller.kind) for p in found], next_after=next_after
    )


@router.patch(
    "/patients/{patient_id}",
    dependencies=[require_scope("registration:write")],
    tags=["patients"],
    responses=problem_responses(PatientNotFound, PatientMerged, DuplicateCard),
)
def update_patient(patient_id: str, data: PatientUpdate, session: SessionDep) -> PatientPublic:
    """Change the patient's insurance scheme, or record another medical card in place of the one on
    file. Visits opened afterwards carry the new scheme in `visit.opened`; a merged record is 409."""
    return service.to_public(service.update_patient(session, patient_id=patient_id, data=data))


@router.get(
    "/patients/{patient_id}",
    tags=["patients"],
    response_model=PatientPublic,
    responses=problem_responses(PatientNotFound),
)
async def read_patient(
    patient_id: str, access: Annotated[ReadAccess, read_access("registration:read", patients=True)]
) -> Response:
    """One patient, identity number masked. A merged record names the record it was merged into."""
    # Siblings read patients by id for their names: the lean path of `read_visit`.
    patient = await access.reader.run(
        service.read_patient, patient_id=patient_id, acting_for=access.caller.patient
    )
    return Response(patient.model_dump_json(), media_type="application/json")


@router.post(
    "/patients/{patient_id}/merge",
    dependencies=[require_scope("registration:write")],
    tags=["patients"],
    responses=problem_responses(PatientNotFound, MergeRefused),
)
def merge_patient(patient_id: str, data: MergeRequest, session: SessionDep) -> MergePublic:
    """Merge an unidentified patient (`source_patient_id`) into this identified patient.

    The source's visits move to this patient; the source record remains, pointing here.
    """
    target, moved = service.merge_patients(session, target_id=patient_id, source_id=data.source_patient_id)
    return MergePublic(patient=service.to_public(target), moved_visit_ids=moved)


@router.get(
    "/patients/{patient_id}/visits",
    dependencies=[require_scope("registration:read", patients=True)],
    tags=["visits"],
    responses=problem_responses(PatientNotFound),
)
def read_patient_visits(patient_id: str, session: SessionDep, caller: CallerDep) -> list[VisitPublic]:
    """A patient's visits, oldest first."""
    service.get_patient(session, patient_id=patient_id, acting_for=caller.patient)
    return [VisitPublic.model_validate(v, from_attributes=True) for v in list_visits(session, patient_id)]


@router.post(
    "/visits",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["visits"],
    responses=problem_responses(PatientNotFound, VisitRefused),
)
def open_visit(
    data: VisitCreate, session: SessionDep, settings: SettingsDep, response: Response
) -> VisitOpened:
    """Open a visit with its payment mode: `prepay` (default), `settle_later` or `green_channel`.

    The answer carries `slip_code`, to print on the patient's slip: with their birth date (or the
    last four digits of their phone) it opens a kiosk session. It is shown this once.
    """
    visit = service.open_visit(session, data=data, settings=settings)
    code, slip = proofs.issue_slip(session, visit=visit, settings=settings)
    response.headers["Location"] = f"/v1/visits/{visit.id}"
    public = VisitPublic.model_validate(visit, from_attributes=True)
    return VisitOpened(**public.model_dump(), slip_code=code, slip_expires_at=slip.expires_at)


@router.get(
    "/visits/{visit_id}",
    tags=["visits"],
    response_model=VisitPublic,
    responses=problem_responses(VisitNotFound),
)
async def read_visit(
    visit_id: str, access: Annotated[ReadAccess, read_access("registration:read", patients=True)]
) -> Response:
    """One visit: its patient, kind, department and payment mode."""
    # The hot read of every sibling: a lean path (kit.database.read_access), and the visit serialised
    # here, once: FastAPI would validate the model it was given again before serialising it.
    visit = await access.reader.run(service.read_visit, visit_id=visit_id, acting_for=access.caller.patient)
    return Response(visit.model_dump_json(), media_type="application/json")


@router.get(
    "/visits/{visit_id}/with-name",
    tags=["visits"],
    response_model=VisitWithName,
    responses=problem_responses(VisitNotFound),
)
async def read_visit_with_name(
    visit_id: str, access: Annotated[ReadAccess, read_access("registration:read")]
) -> Response:
    """The visit with its patient's name, for a sibling service that queues the visit and shows the name
    (triage's waiting-room board, masked there): one read where a visit and a patient were two. Not
    routed by the gateway."""
    visit = await access.reader.run(service.read_visit_with_name, visit_id=visit_id)
    return Response(visit.model_dump_json(), media_type="application/json")


@router.post(
    "/visits/{visit_id}/slip",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["visits"],
    responses=problem_responses(VisitNotFound),
)
def reissue_slip(
    visit_id: str,
    session: SessionDep,
    settings: SettingsDep,
    data: Annotated[SlipRequest | None, Body()] = None,
) -> SlipPublic:
    """A new slip code for the visit (a lost or expired slip); the visit's earlier codes stop working.

    `valid_seconds` may shorten the configured lifetime, never lengthen it. Shown this once.
    """
    visit = service.get_visit(session, visit_id=visit_id)
    valid_seconds = data.valid_seconds if data else None
    code, slip = proofs.issue_slip(session, visit=visit, settings=settings, valid_seconds=valid_seconds)
    return SlipPublic(visit_id=visit.id, slip_code=code, expires_at=slip.expires_at)


@router.post("/session-proofs", tags=["patient sessions"], include_in_schema=False)
def check_session_proof(
    data: ProofCheck, session: SessionDep, settings: SettingsDep, _caller: ProofCallerDep
) -> ProofVerdict:
    """For the gateway: the patient a proof names, or `verified: false` whatever went wrong.

    Always 200, so the audit row and the failure count of a refused try are committed.
    """
    proof = data.proof
    if isinstance(proof, CodeProof):
        patient_id = proofs.check_one_time_code(
            session, client=data.client, id_number=proof.id_number, code=proof.otp, settings=settings
        )
    else:
        patient_id = proofs.check_slip(
            session,
            client=data.client,
            slip_code=proof.slip_code,
            birth_date=proof.birth_date,
            phone_last4=proof.phone_last4,
            settings=settings,
        )
    return ProofVerdict(verified=patient_id is not None, patient_id=patient_id)


@router.post(
    "/session-challenges",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["patient sessions"],
    include_in_schema=False,
)
def send_session_challenge(
    data: ChallengeRequest,
    session: SessionDep,
    settings: SettingsDep,
    sender: NotifierDep,
    background: BackgroundTasks,
    _caller: ProofCallerDep,
) -> dict[str, str]:
    """For the gateway: text a one-time code to the registered phone, if there is one. Always 202.

    The message goes out after the code is committed (a background task: no call to an SMS gateway
    while the database is held).
    """
    message = proofs.send_challenge(session, client=data.client, id_number=data.id_number, settings=settings)
    if message is not None:
        background.add_task(sender.send, message)
    return {"status": "accepted"}


@router.get("/audit/session-attempts", dependencies=[require_scope("audit:read")], tags=["audit"])
def read_session_attempts(
    session: SessionDep,
    patient_id: Annotated[str | None, Query(max_length=36)] = None,
    client: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, page_size(500)] = 100,
) -> list[SessionAttemptPublic]:
    """Every try to open a patient session and every code asked for, newest first (administrators).

    Never holds a slip code, identity number or one-time code: `presented` is a short keyed digest.
    """
    rows = list_session_attempts(session, patient_id=patient_id, client=client, limit=limit)
    return [SessionAttemptPublic.model_validate(r, from_attributes=True) for r in rows]


# --- the directory and the schedule (published: apps, kiosks and hall screens read them) --------------

DIRECTORY_READ = require_scope("directory:read", patients=True)
SCHEDULES_WRITE = require_scope("schedules:write")
APPOINTMENTS_WRITE = require_scope("appointments:write", patients=True)
APPOINTMENTS_CHECK_IN = require_scope("checkin:write", patients=True)
APPOINTMENTS_READ = require_scope("registration:read", patients=True)
Code = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]
RecordId = Annotated[str, Path(min_length=1, max_length=36)]


@router.get("/departments", dependencies=[DIRECTORY_READ], tags=["directory"])
def read_departments(session: SessionDep) -> list[DepartmentPublic]:
    """Every department, with the floor and zone where its clinics are (科室导航)."""
    return [DepartmentPublic.model_validate(d, from_attributes=True) for d in list_departments(session)]


@router.post(
    "/departments",
    dependencies=[SCHEDULES_WRITE],
    status_code=status.HTTP_201_CREATED,
    tags=["directory"],
    responses=problem_responses(DuplicateDepartment),
)
def create_department(data: DepartmentCreate, session: SessionDep) -> DepartmentPublic:
    """Add a department to the directory; a code already used is 409."""
    return DepartmentPublic.model_validate(
        schedules.create_department(session, data=data), from_attributes=True
    )


@router.get("/doctors", dependencies=[DIRECTORY_READ], tags=["directory"])
def read_doctors(
    session: SessionDep,
    department: Annotated[str | None, Query(max_length=32)] = None,
    expert: bool | None = None,
    limit: Annotated[int, page_size(500)] = 100,
) -> list[DoctorPublic]:
    """Doctors with title, expert status and short profile (专家介绍), by department."""
    rows = list_doctors(session, department=department, expert=expert, limit=limit)
    return [DoctorPublic.model_validate(d, from_attributes=True) for d in rows]


@router.get(
    "/doctors/{doctor_id}",
    dependencies=[DIRECTORY_READ],
    tags=["directory"],
    responses=problem_responses(DoctorNotFound),
)
def read_doctor(doctor_id: RecordId, session: SessionDep) -> DoctorPublic:
    """One doctor of the directory."""
    return DoctorPublic.model_validate(
        schedules.get_doctor(session, doctor_id=doctor_id), from_attributes=True
    )


@router.post(
    "/doctors",
    dependencies=[SCHEDULES_WRITE],
    status_code=status.HTTP_201_CREATED,
    tags=["directory"],
    responses=problem_responses(DepartmentNotFound),
)
def create_doctor(data: DoctorCreate, session: SessionDep) -> DoctorPublic:
    """Add a doctor to a department. The title (and expert status) fixes the sessions' consultation fee."""
    return DoctorPublic.model_validate(schedules.create_doctor(session, data=data), from_attributes=True)


@router.get("/schedule-templates", dependencies=[DIRECTORY_READ], tags=["schedules"])
def read_templates(
    session: SessionDep,
    department: Annotated[str | None, Query(max_length=32)] = None,
    doctor_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, page_size(500)] = 100,
) -> list[TemplatePublic]:
    """The weekly clinic timetable (出诊时间表)."""
    rows = list_templates(session, department=department, doctor_id=doctor_id, limit=limit)
    return [TemplatePublic.model_validate(t, from_attributes=True) for t in rows]


@router.post(
    "/schedule-templates",
    dependencies=[SCHEDULES_WRITE],
    status_code=status.HTTP_201_CREATED,
    tags=["schedules"],
    responses=problem_responses(DepartmentNotFound, DoctorNotFound, ScheduleRefused),
)
def create_template(data: TemplateCreate, session: SessionDep) -> TemplatePublic:
    """A weekly clinic of a doctor of the department: weekday, period, local times (the period's usual
    hours if omitted), quota, slot length, kind and booking hours. 422 when no slot fits."""
    return TemplatePublic.model_validate(schedules.create_template(session, data=data), from_attributes=True)


@router.post(
    "/schedule-templates/{template_id}/exceptions",
    dependencies=[SCHEDULES_WRITE],
    status_code=status.HTTP_201_CREATED,
    tags=["schedules"],
    responses=problem_responses(TemplateNotFound, ScheduleRefused),
)
def add_template_exception(
    template_id: RecordId, data: ExceptionCreate, session: SessionDep
) -> ExceptionPublic:
    """Skip one date of the template, or give it its own quota or times (for sessions generated later)."""
    exception = schedules.add_exception(session, template_id=template_id, data=data)
    return ExceptionPublic.model_validate(exception, from_attributes=True)


@router.post(
    "/clinic-sessions/generate",
    dependencies=[SCHEDULES_WRITE],
    tags=["schedules"],
)
def generate_sessions(data: GenerateRequest, session: SessionDep, settings: SettingsDep) -> GenerateResult:
    """Generate the sessions of every template in force (or one department's) for a date range.

    Idempotent: a session exists at most once per template and date, so a re-run creates none.
    """
    return schedules.generate_sessions(session, data=data, settings=settings)


@router.post(
    "/clinic-sessions",
    dependencies=[SCHEDULES_WRITE],
    status_code=status.HTTP_201_CREATED,
    tags=["schedules"],
    responses=problem_responses(DepartmentNotFound, DoctorNotFound, ScheduleRefused),
)
def create_session(data: SessionCreate, session: SessionDep, settings: SettingsDep) -> ClinicSessionPublic:
    """An ad-hoc session (a holiday or extra clinic), bookable from now until it ends unless told."""
    return schedules.to_public(schedules.create_session(session, data=data, settings=settings))


@router.get("/clinic-sessions", dependencies=[DIRECTORY_READ], tags=["schedules"])
def read_sessions(
    session: SessionDep,
    department: Annotated[str | None, Query(max_length=32)] = None,
    doctor_id: Annotated[str | None, Query(max_length=36)] = None,
    on: Annotated[date | None, Query(alias="date")] = None,
    from_date: date | None = None,
    to_date: date | None = None,
    limit: Annotated[int, page_size(500)] = 100,
) -> list[ClinicSessionPublic]:
    """Clinic sessions by department, doctor and date (`date`, or `from_date`..`to_date`), soonest first."""
    rows = list_clinic_sessions(
        session,
        department=department,
        doctor_id=doctor_id,
        from_date=on or from_date,
        to_date=on or to_date,
        limit=limit,
    )
    return [schedules.to_public(s) for s in rows]


@router.get(
    "/clinic-sessions/{clinic_session_id}",
    dependencies=[DIRECTORY_READ],
    tags=["schedules"],
    responses=problem_responses(ClinicSessionNotFound),
)
def read_session(clinic_session_id: RecordId, session: SessionDep) -> ClinicSessionPublic:
    """One session: times, quota, fee item and booking hours."""
    return schedules.to_public(schedules.get_clinic_session(session, clinic_session_id=clinic_session_id))


@router.get(
    "/clinic-sessions/{clinic_session_id}/slots",
    dependencies=[DIRECTORY_READ],
    tags=["schedules"],
    responses=problem_responses(ClinicSessionNotFound),
)
def read_session_slots(clinic_session_id: RecordId, session: SessionDep) -> SessionSlots:
    """The session's slots and the seats left in each (a lapsed hold counts as free)."""
    return schedules.session_slots(session, clinic_session_id=clinic_session_id)


# --- appointments ------------------------------------------------------------------------------------


def _patient_channel_checked(caller: Caller, data: AppointmentCreate) -> None:
    """An app acting for its patient books only in the app, for that patient (the gateway checked too)."""
    if caller.patient is None:
        return
    if data.patient_id != caller.patient:
        raise PatientNotFound("No such patient.")
    if data.channel is not Channel.app or data.check_in:
        raise BookingRefused("A patient's own device books through the `app` channel only.")


async def refuse_when_full(
    data: AppointmentCreate, request: Request, caller: CallerDep, key: IdempotencyKeyHeader = None
) -> None:
    """Before the unit of work (and SQLite's single writer): a full session is refused on a read, unless
    the request is a retry whose first answer is stored (a replay must give that answer back)."""
    database = request.app.state.database

    def check(session: Session) -> None:
        if key and session.get(IdempotencyRecord, (caller.subject, checked_key(key))) is not None:
            return
        appointments.refuse_when_full(session, clinic_session_id=data.clinic_session_id)

    await database.read(check)


@router.post(
    "/appointments",
    dependencies=[APPOINTMENTS_WRITE, Depends(refuse_when_full)],
    status_code=status.HTTP_201_CREATED,
    response_model=AppointmentAnswer,
    tags=["appointments"],
    responses=problem_responses(
        PatientNotFound,
        ClinicSessionNotFound,
        BookingConflict,
        NoSuchSlot,
        BookingRefused,
    ),
)
def book_appointment(
    data: AppointmentCreate,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    key: IdempotencyKeyHeader = None,
) -> Any:
    """Book a seat of a clinic session (or `hold` it for a few minutes, e.g. while the app takes payment).

    409 when the session is full (`session-full`), the slot is (`slot-full`), the patient already holds
    a booking in it (`already-booked`), booking is not open (`booking-closed`) or the session is
    suspended or cancelled (`session-not-open`); never an overbooked slot, however many book at once.
    An onsite booking with `check_in` is a walk-in (现场挂号): it draws on the same quota and opens the
    visit at once. Honours `Idempotency-Key` (a retry books once). Emits `appointment.booked` (or
    `appointment.held`), and for a walk-in `visit.opened` and `appointment.arrived`.
    """
    _patient_channel_checked(caller, data)

    def run() -> tuple[int, AppointmentAnswer]:
        answer = appointments.create_appointment(
            session, data=data, booked_by=caller.subject, acting_for=caller.patient, settings=settings
        )
        return status.HTTP_201_CREATED, answer

    if key is None:
        return JSONResponse(jsonable_encoder(run()[1]), status.HTTP_201_CREATED)
    return idempotent(
        session,
        IdempotencyRecord,
        client=caller.subject,
        key=key,
        payload={"operation": "appointment", "patient": caller.patient, "body": data},
        run=run,
    )


@router.get("/appointments", dependencies=[APPOINTMENTS_READ], tags=["appointments"])
def read_appointments(
    session: SessionDep,
    caller: CallerDep,
    patient_id: Annotated[str | None, Query(max_length=36)] = None,
    clinic_session_id: Annotated[str | None, Query(max_length=36)] = None,
    appointment_status: Annotated[AppointmentStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, page_size(500)] = 100,
) -> list[AppointmentPublic]:
    """Appointments by patient, session and status, by slot time. A patient's device sees only its own."""
    if caller.patient is not None:
        if patient_id not in (None, caller.patient):
            return []
        patient_id = caller.patient
    if patient_id is None and clinic_session_id is None:
        raise BadRequest("Name a patient_id or a clinic_session_id.", slug="filter-required")
    rows = list_appointments(
        session,
        patient_id=patient_id,
        clinic_session_id=clinic_session_id,
        status=appointment_status.value if appointment_status else None,
        limit=limit,
    )
    sessions = {
        s: schedules.get_clinic_session(session, clinic_session_id=s)
        for s in {a.clinic_session_id for a in rows}
    }
    return [appointments.to_public(a, sessions[a.clinic_session_id]) for a in rows]


@router.get(
    "/appointments/{appointment_id}",
    dependencies=[APPOINTMENTS_READ],
    tags=["appointments"],
    responses=problem_responses(AppointmentNotFound),
)
def read_appointment(appointment_id: RecordId, session: SessionDep, caller: CallerDep) -> AppointmentPublic:
    """One appointment; another patient's is 404 to a patient's device."""
    appointment = appointments.get_appointment(
        session, appointment_id=appointment_id, acting_for=caller.patient
    )
    clinic_session = schedules.get_clinic_session(session, clinic_session_id=appointment.clinic_session_id)
    return appointments.to_public(appointment, clinic_session)


@router.post(
    "/appointments/{appointment_id}/confirm",
    dependencies=[APPOINTMENTS_WRITE],
    tags=["appointments"],
    responses=problem_responses(AppointmentNotFound, AppointmentStateConflict),
)
def confirm_appointment(
    appointment_id: RecordId, session: SessionDep, caller: CallerDep
) -> AppointmentPublic:
    """Turn a hold into a booking before it lapses (409 `hold-lapsed` after). Emits `appointment.booked`."""
    return appointments.confirm_hold(session, appointment_id=appointment_id, acting_for=caller.patient)


@router.post(
    "/appointments/{appointment_id}/cancel",
    dependencies=[APPOINTMENTS_WRITE],
    tags=["appointments"],
    responses=problem_responses(AppointmentNotFound, AppointmentStateConflict),
)
def cancel_appointment(
    appointment_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    data: Annotated[CancelRequest | None, Body()] = None,
) -> AppointmentPublic:
    """Cancel a hold or a booking; the seat is free again at once.

    The patient (`reason: patient`, always so from the patient's own device) may cancel until
    `REGISTRATION_CANCEL_CUTOFF_MINUTES` before the slot (409 `cancel-cutoff-passed` after); the desk
    (`reason: desk`) until the patient arrives. Emits `appointment.cancelled`.
    """
    reason = CancelReason.patient if caller.patient is not None or data is None else CancelReason(data.reason)
    return appointments.cancel(
        session, appointment_id=appointment_id, reason=reason, acting_for=caller.patient, settings=settings
    )


@router.post(
    "/appointments/{appointment_id}/check-in",
    dependencies=[APPOINTMENTS_CHECK_IN],
    tags=["appointments"],
    responses=problem_responses(AppointmentNotFound, CheckInRefused),
)
def check_in_appointment(
    appointment_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    data: Annotated[CheckInRequest | None, Body()] = None,
) -> AppointmentAnswer:
    """Check in on the day (desk, kiosk or app), from `REGISTRATION_CHECKIN_EARLY_MINUTES` before the
    slot until `REGISTRATION_CHECKIN_LATE_MINUTES` after it (409 `check-in-too-early`/`-too-late`).

    Opens the outpatient visit in the session's department with the session's consultation fee, answers
    it with its slip code (shown once) and puts the patient in the department's queue carrying the
    appointment time. Emits `visit.opened` (with `appointment_id`) and `appointment.arrived`.
    """
    return appointments.check_in(
        session,
        appointment_id=appointment_id,
        acting_for=caller.patient,
        payment_mode=data.payment_mode if data else PaymentMode.prepay,
        settings=settings,
    )


# --- disrupted sessions -----------------------------------------------------------------------------------

ID_PATTERN = r"^[A-Za-z0-9-]{1,36}$"  # ids are uuids: anything else is refused before it reaches SQL
OfferIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
ClinicSessionIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
KEYED_WRITE_ERRORS = (BadRequest, Conflict, UnprocessableContent)


def _once_per_key(
    session: Session, caller: Caller, key: str | None, payload: dict[str, Any], run: Callable[[], Any]
) -> JSONResponse:
    """Run once per `Idempotency-Key` when one is sent (a retry gets the first answer), else just run."""
    if key is None:
        return JSONResponse(jsonable_encoder(run()), status.HTTP_201_CREATED)
    return idempotent(
        session, IdempotencyRecord, client=caller.subject, key=key, payload=payload, run=lambda: (201, run())
    )


@router.post(
    "/clinic-sessions/{clinic_session_id}/disruptions",
    dependencies=[require_scope("schedules:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=DisruptionPublic,
    tags=["disruptions"],
    responses=problem_responses(
        *KEYED_WRITE_ERRORS, ClinicSessionNotFound, DisruptionRefused, DisruptionInvalid
    ),
)
def disrupt_session(
    clinic_session_id: ClinicSessionIdPath,
    data: DisruptionCreate,
    session: SessionDep,
    caller: CallerDep,
    settings: SettingsDep,
    key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Change, suspend, resume or cancel a clinic session, with the reason (doctor, patient, hospital).

    Honours `Idempotency-Key`. The answer lists every affected hold and booking (not yet checked in).
    `cancel` cancels each of them (`session_cancelled`: billing refunds paid fees) and leaves no seat to
    book; `suspend` refuses new bookings and check-ins and keeps the bookings; `resume` reopens;
    `change` moves the times or names a substitute doctor and keeps the bookings. `cancel` and
    `suspend` offer each patient a rebooking (`offer`). A session in the wrong state for the action is
    409 `disruption-refused`. Emits `session.changed|suspended|resumed|cancelled` and one
    `appointment.disrupted` per affected patient.
    """
    return _once_per_key(
        session,
        caller,
        key,
        {"operation": "disruption", "clinic_session_id": clinic_session_id, "body": data},
        lambda: disruptions.disrupt_session(
            session,
            clinic_session_id=clinic_session_id,
            data=data,
            created_by=caller.subject,
            settings=settings,
        ),
    )


@router.get(
    "/clinic-sessions/{clinic_session_id}/disruptions",
    dependencies=[require_scope("registration:read")],
    tags=["disruptions"],
    responses=problem_responses(ClinicSessionNotFound),
)
def read_disruptions(clinic_session_id: ClinicSessionIdPath, session: SessionDep) -> list[DisruptionPublic]:
    """The session's disruptions, oldest first, each with every appointment it touched as it is now and
    the rebooking offered."""
    return disruptions.list_disruptions(session, clinic_session_id=clinic_session_id)


@router.get(
    "/rebooking-offers/{offer_id}",
    dependencies=[require_scope("registration:read", patients=True)],
    tags=["disruptions"],
    responses=problem_responses(RebookingOfferNotFound),
)
def read_rebooking_offer(
    offer_id: OfferIdPath, session: SessionDep, caller: CallerDep
) -> RebookingOfferPublic:
    """A disrupted patient's rebooking offer (an app sees only its own patient's)."""
    return disruptions.read_offer(session, offer_id=offer_id, acting_for=caller.patient)


@router.post(
    "/rebooking-offers/{offer_id}/accept",
    dependencies=[require_scope("appointments:write", patients=True)],
    status_code=status.HTTP_201_CREATED,
    response_model=OfferDecisionAnswer,
    tags=["disruptions"],
    responses=problem_responses(
        BadRequest, Conflict, BookingConflict, RebookingOfferNotFound, RebookingOfferClosed
    ),
)
def accept_rebooking_offer(
    offer_id: OfferIdPath,
    session: SessionDep,
    caller: CallerDep,
    settings: SettingsDep,
    key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Accept: book the offered session for the patient (the patient's app, or the desk).

    Honours `Idempotency-Key`. Booked like any booking: a full or closed session is 409 (the offer stays
    open); an offer accepted, declined, superseded or expired is 409 `rebooking-offer-closed`. A booking
    of a suspended session still held is given up for the new one. Emits `appointment.booked` and
    `appointment.rebooked`.
    """
    return _once_per_key(
        session,
        caller,
        key,
        {"operation": "accept-offer", "offer_id": offer_id, "patient": caller.patient},
        lambda: disruptions.accept_offer(
            session,
            offer_id=offer_id,
            acting_for=caller.patient,
            decided_by=caller.subject,
            settings=settings,
        ),
    )


@router.post(
    "/rebooking-offers/{offer_id}/decline",
    dependencies=[require_scope("appointments:write", patients=True)],
    tags=["disruptions"],
    responses=problem_responses(RebookingOfferNotFound, RebookingOfferClosed),
)
def decline_rebooking_offer(
    offer_id: OfferIdPath, session: SessionDep, caller: CallerDep
) -> OfferDecisionAnswer:
    """Decline: a cancelled appointment stays cancelled (a paid fee is refunded already); a suspended
    session's booking is kept. Declining again answers the same; an accepted or expired offer is 409."""
    return disruptions.decline_offer(
        session, offer_id=offer_id, acting_for=caller.patient, decided_by=caller.subject
    )
