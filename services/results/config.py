"""Results settings (env prefix `RESULTS_`)."""

from functools import lru_cache
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import RoleName, ServiceSettings, runtime_role_name, service_url_setting
from services.results.schemas import InstitutionLevel, Priority

# A turnaround target, at most a year; 0 is "due at once" (a drill, or a test of the overdue alarm).
TargetMinutes = Annotated[int, Field(ge=0, le=525_600)]


class ResultsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RESULTS_", extra="ignore")

    service_name: str = "results"
    # On PostgreSQL its connections act as this role, which may only append to its audit and prints
    # (migration 0011_runtime_role).
    database_runtime_role: RoleName | None = runtime_role_name("results")
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
    # Turnaround targets, ordered to first final report (turnaround.py): per priority, and per item
    # and priority where an item differs, e.g. RESULTS_TAT_ITEM_MINUTES='{"250101015": {"emergency": 60}}'.
    tat_emergency_minutes: TargetMinutes = 120
    tat_routine_minutes: TargetMinutes = 1440
    tat_item_minutes: dict[str, dict[Priority, TargetMinutes]] = Field(default_factory=dict)
    # How often the loop sends `order.overdue` for orders past due; 0 turns the loop off.
    overdue_check_seconds: float = Field(default=30.0, ge=0)
    # Report PDFs render (and prints stamp) in this many worker processes; 0 renders in the service's
    # own threads (renderings.py).
    pdf_processes: int = Field(default=0, ge=0, le=32)
    # How often the background loop looks for releasable reports to render ahead of their first print,
    # besides each commit of an event; 0 turns the loop off (prints then render on demand).
    prerender_seconds: float = Field(default=30.0, ge=0)
    # Reports reported longer ago than this are left to render on demand.
    prerender_lookback_minutes: float = Field(default=1440.0, ge=0)


@lru_cache
def get_settings() -> ResultsSettings:
    return ResultsSettings()
