"""Billing's nightly jobs from the command line, on the database the service is configured with
(`BILLING_*` / `PATIENTFLOW_*` settings, as `./run up` and the containers set them):

    python -m services.billing.jobs inpatient-days --date 2026-12-01   # post the bed and nursing days
    python -m services.billing.jobs daily-bills --date 2026-12-01      # issue that day's daily bills

Both are idempotent, like their routes (`POST /v1/inpatient-days/runs`, `POST /v1/daily-bills/runs`).
Each prints its result as JSON. Without `--date`: yesterday (hospital time).
"""

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

from kit.database import service_database
from kit.migrations import upgrade
from services.billing.config import get_settings
from services.billing.service import daily_bill, inpatient_days
from services.billing.service.accounts import hospital_today


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.billing.jobs", description=__doc__)
    parser.add_argument("job", choices=["inpatient-days", "daily-bills"])
    parser.add_argument("--date", type=date.fromisoformat, default=None, help="YYYY-MM-DD, hospital day")
    args = parser.parse_args(argv)
    settings = get_settings()
    day = args.date or hospital_today() - timedelta(days=1)
    database = service_database(settings)
    try:
        upgrade(database, Path(__file__).parent / "migrations")
        if args.job == "inpatient-days":
            items = inpatient_days.DayItems(
                bed=settings.bed_class_items, nursing=settings.nursing_class_items
            )
            result = inpatient_days.run_inpatient_days(database, up_to=day, items=items)
            print(result.model_dump_json())
        else:
            print(daily_bill.issue_daily_bills(database, day=day).model_dump_json())
    finally:
        database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
