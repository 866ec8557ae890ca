"""A patient's place in their queues and the wait to expect (positions.py): for the patient's app or kiosk,
and the queue's estimates for staff."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from kit.auth import CallerDep, require_scope
from kit.config import app_settings
from kit.database import SessionDep
from services.triage import positions
from services.triage.config import TriageSettings
from services.triage.schemas import DEPARTMENT_PATTERN, VISIT_ID_PATTERN, QueueEstimates, VisitQueuePositions

router = APIRouter()
SettingsDep = Annotated[TriageSettings, Depends(app_settings)]
Department = Annotated[str, Path(pattern=DEPARTMENT_PATTERN, examples=["internal"])]
VisitId = Annotated[str, Path(pattern=VISIT_ID_PATTERN)]


@router.get(
    "/visits/{visit_id}/queue-positions",
    dependencies=[require_scope("triage:read", patients=True)],
    tags=["queues"],
)
def read_queue_positions(
    visit_id: VisitId, session: SessionDep, caller: CallerDep, settings: SettingsDep
) -> VisitQueuePositions:
    """Where the visit stands in each queue it waits in: its place in the queue rules' order, how many
    are ahead, and an estimated wait as a band (`low_minutes`–`high_minutes`), never a single minute,
    from the queue's recent service times and the stations calling. Called and held tickets are listed
    without a place. No other patient's data is in the answer; a patient's app or kiosk reaches only its
    own patient's visits (another's is 404). `nearly_up`: within the first places, when the
    `queue.nearly_up` event is sent.
    """
    return positions.visit_positions(session, visit_id=visit_id, acting_for=caller.patient, settings=settings)


@router.get("/queues/{department}/estimates", dependencies=[require_scope("triage:read")], tags=["queues"])
def read_queue_estimates(
    department: Department, session: SessionDep, settings: SettingsDep
) -> QueueEstimates:
    """Staff's view of a queue's wait estimates: each waiting ticket's band in the rules' order, the band a
    patient joining now would get, and what they are estimated from (recent services, stations calling)."""
    return positions.queue_estimates(session, department=department, settings=settings)
