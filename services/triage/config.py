"""Triage settings (env prefix `TRIAGE_`)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting
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


@lru_cache
def get_settings() -> TriageSettings:
    return TriageSettings()
