"""Registration settings (env prefix `REGISTRATION_`)."""

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting


class RegistrationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRATION_", extra="ignore")

    service_name: str = "registration"
    # Billing's feed tells registration which visits are settled (`visit.settled`).
    billing_url: str = service_url_setting("billing")
    # The catalogue item charged when a visit opens (诊察费), by visit kind; billing prices it.
    outpatient_fee_item: str = "110200001"
    emergency_fee_item: str = "110200005"


@lru_cache
def get_settings() -> RegistrationSettings:
    return RegistrationSettings()
