"""The re-triage timer: a background job that emits `triage.overdue` once per assessment whose level's
limit has passed while the patient still waits (service.emit_overdue); the clock is injectable."""

import logging
from collections.abc import Callable
from datetime import datetime

from kit.clock import utcnow
from kit.database import Database
from kit.worker import ThreadWorker
from services.triage import service
from services.triage.config import TriageSettings

logger = logging.getLogger("patientflow.triage")


class OverdueTimer(ThreadWorker):
    """Runs `service.emit_overdue` every `overdue_check_seconds`."""

    def __init__(
        self, database: Database, settings: TriageSettings, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        super().__init__("triage-overdue-timer")
        self.database, self.settings, self.clock = database, settings, clock

    def run_once(self) -> list[str]:
        with self.database.session() as session:
            fired = service.emit_overdue(session, now=self.clock())
        if fired:
            logger.info("re-triage timer: %d patient(s) overdue", len(fired))
        return fired

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the job: try again next round
                logger.exception("the re-triage timer failed; retrying")
            self.stopping.wait(self.settings.overdue_check_seconds)
