"""Results settings (env prefix `RESULTS_`)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting
from services.results.schemas import InstitutionLevel


class ResultsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RESULTS_", extra="ignore")

    service_name: str = "results"
    # Registration answers `GET /visits/{id}` and serves `patient.merged`; billing serves `charge.paid`.
    registration_url: str = service_url_setting("registration")
    billing_url: str = service_url_setting("billing")
    # Some hospitals hand out a report only once its order is paid (billing's `charge.paid`).
    release_requires_payment: bool = False
    # A critical value (危急值) nobody has acknowledged after this long raises `critical.escalated`, once.
    critical_escalation_minutes: float = Field(default=10.0, ge=0)
    # How often the background loop looks for them; 0 turns the loop off.
    critical_check_seconds: float = Field(default=15.0, ge=0)
    # This hospital, as its own reports name it for mutual recognition (互认): results are recognised
    # from institutions of this level or higher.
    institution_code: str = Field(default="PF0000001", min_length=1, max_length=32)
    institution_name: str = Field(default="patientflow 示范医院", min_length=1, max_length=64)
    institution_level: InstitutionLevel = InstitutionLevel.tertiary_a


@lru_cache
def get_settings() -> ResultsSettings:
    return ResultsSettings()
