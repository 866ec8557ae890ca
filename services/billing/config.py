"""Billing settings (env prefix `BILLING_`)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting

CATALOGUE_PATH = Path(__file__).parent / "catalogue.csv"
CHARGE_RULES_PATH = Path(__file__).parent / "charge_rules.csv"


class BillingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    service_name: str = "billing"
    registration_url: str = service_url_setting("registration")
    results_url: str = service_url_setting("results")
    # The price list (医疗服务项目价格) and the charging rules, loaded at start as a new version whenever
    # the file differs from the last one loaded from a file (an upload since is kept otherwise).
    catalogue_path: Path = CATALOGUE_PATH
    charge_rules_path: Path = CHARGE_RULES_PATH
    # Settlement first waits this long for the charges registration and results had committed to arrive
    # (their feed heads); past it, 503 `charges-still-arriving` and nothing settled.
    settlement_wait_seconds: float = Field(default=3.0, gt=0, le=30)


@lru_cache
def get_settings() -> BillingSettings:
    return BillingSettings()
