"""The critical-value escalation loop: every `critical_check_seconds`, escalates each critical value
(危急值) nobody acknowledged within `critical_escalation_minutes` (critical.escalate_overdue); the clock is
injectable."""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from kit.clock import utcnow
from kit.database import Database
from kit.worker import ThreadWorker
from services.results import critical
from services.results.config import ResultsSettings

logger = logging.getLogger("patientflow.results")


class CriticalEscalator(ThreadWorker):
    """Runs `critical.escalate_overdue` every `critical_check_seconds`."""

    def __init__(
        self, database: Database, settings: ResultsSettings, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        super().__init__("results-critical-escalator")
        self.database, self.settings, self.clock = database, settings, clock

    def run_once(self) -> list[str]:
        after = timedelta(minutes=self.settings.critical_escalation_minutes)
        with self.database.session() as session:
            escalated = critical.escalate_overdue(session, now=self.clock(), after=after)
        if escalated:
            logger.warning("critical values unacknowledged past the limit: %d escalated", len(escalated))
        return escalated

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the loop: try again next round
                logger.exception("the critical-value escalation failed; retrying")
            self.stopping.wait(self.settings.critical_check_seconds)
