"""Results settings (env prefix `RESULTS_`)."""

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting


class ResultsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RESULTS_", extra="ignore")

    service_name: str = "results"
    # Registration answers `GET /visits/{id}` and serves `patient.merged`; billing serves `charge.paid`.
    registration_url: str = service_url_setting("registration")
    billing_url: str = service_url_setting("billing")


@lru_cache
def get_settings() -> ResultsSettings:
    return ResultsSettings()
