"""Billing settings (env prefix `BILLING_`)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import RoleName, ServiceSettings, runtime_role_name, service_url_setting

CATALOGUE_PATH = Path(__file__).parent / "catalogue.csv"
CHARGE_RULES_PATH = Path(__file__).parent / "charge_rules.csv"
INSURANCE_SPLIT_PATH = Path(__file__).parent / "insurance_split.csv"


class BillingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    service_name: str = "billing"
    # On PostgreSQL its connections act as this role, which may only append to its invoices and receipts
    # (migration 0009_runtime_role).
    database_runtime_role: RoleName | None = runtime_role_name("billing")
    registration_url: str = service_url_setting("registration")
    results_url: str = service_url_setting("results")
    # The price list (医疗服务项目价格) and the charging rules, loaded at start as a new version whenever
    # the file differs from the last one loaded from a file (an upload since is kept otherwise).
    catalogue_path: Path = CATALOGUE_PATH
    charge_rules_path: Path = CHARGE_RULES_PATH
    # The insurance split (service/insurance.py): per scheme and class, covered basis points, deductible
    # and cap per visit. Read at start; a bad row stops the start naming its line.
    insurance_split_path: Path = INSURANCE_SPLIT_PATH
    # Settlement first waits this long for the charges registration and results had committed to arrive
    # (their feed heads); past it, 503 `charges-still-arriving` and nothing settled.
    settlement_wait_seconds: float = Field(default=3.0, gt=0, le=30)
    # Settle-later accounts (先诊疗后结算) run on credit up to this many fen of unpaid charges beyond
    # their deposit; charges past it are still posted, and flagged as held (due now) on the standing.
    settle_later_credit_limit_fen: int = Field(default=500_000, ge=0, le=10**12)
    # `deposit.low_balance` fires when an account's balance (deposits + payments − charges) falls to
    # this (default 500 yuan); a deposit may name its own.
    deposit_low_balance_fen: int = Field(default=50_000, ge=0, le=10**12)
    # The bed-day (床位费) and nursing (护理费) items by the bed's class, priced on each day of the stay.
    bed_class_items: dict[str, str] = Field(
        default_factory=lambda: {
            "general": "110900001",
            "double": "110900001D",  # 双人间: the same national item, the hospital's own price
            "single": "110900001S",  # 单人间
            "icu": "110900004",
        }
    )
    nursing_class_items: dict[str, str] = Field(
        default_factory=lambda: {
            "general": "120100003",
            "double": "120100003",
            "single": "120100003",
            "icu": "120100002",
        }
    )
    # The nightly job (inpatient_days.py): every this many seconds, post every stay's bed and nursing
    # days up to yesterday (catching up missed nights) and issue yesterday's daily bills; 0 turns it off.
    inpatient_days_check_seconds: float = Field(default=600.0, ge=0)


@lru_cache
def get_settings() -> BillingSettings:
    return BillingSettings()
