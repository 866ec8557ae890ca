"""Triage settings (env prefix `TRIAGE_`)."""

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting


class TriageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    service_name: str = "triage"
    # Triage checks every visit it is handed against registration before assessing or queueing it,
    # and reads its feed (merges re-point assessments and tickets).
    registration_url: str = service_url_setting("registration")


@lru_cache
def get_settings() -> TriageSettings:
    return TriageSettings()
