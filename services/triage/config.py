"""Triage settings (env prefix `TRIAGE_`)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting
from services.triage.assessment import DEFAULT_VITAL_RULES, LevelMinutes, VitalRule
from services.triage.rules import QueueRules


class TriageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    service_name: str = "triage"
    # Triage checks every visit it is handed against registration before assessing or queueing it,
    # and reads its feed (merges re-point assessments and tickets).
    registration_url: str = service_url_setting("registration")

    # --- Queue rules (rules.py): per department, as JSON in TRIAGE_QUEUE_RULES; others get the default.
    queue_rules: dict[str, QueueRules] = Field(default_factory=dict)

    def rules_for(self, department: str) -> QueueRules:
        return self.queue_rules.get(department) or QueueRules()

    # Wait estimates (positions.py): a ticket within this many places of the front is told once that it
    # is nearly up (`queue.nearly_up`); 0 turns the event off.
    nearly_up_within: int = Field(default=3, ge=0, le=50)

    # Assessment in depth (services/triage/assessment.py). Vital-sign thresholds of the suggested level,
    # as JSON (`TRIAGE_VITAL_RULES`); the defaults are documented there.
    vital_rules: list[VitalRule] = Field(default_factory=lambda: list(DEFAULT_VITAL_RULES))
    # How soon a doctor must see each level (响应时限) and when a waiting patient is re-assessed; a patient
    # still waiting past the smaller of the two is overdue. Defaults 0 / 10 / 30 / 240 minutes.
    response_minutes: LevelMinutes = Field(default_factory=LevelMinutes)
    reassess_minutes: LevelMinutes = Field(default_factory=LevelMinutes)
    # How often the re-triage timer looks for overdue patients; 0 turns it off.
    overdue_check_seconds: float = Field(default=15.0, ge=0)


@lru_cache
def get_settings() -> TriageSettings:
    return TriageSettings()
