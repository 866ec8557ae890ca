"""One catalogue code, one name: results' orderable tests carry billing's price-catalogue names.

The price catalogue (`services/billing/catalogue.csv`, after 《全国医疗服务价格项目规范》) is the official
naming; results' seed (`services/results/tests.json`) repeats it so an order and its charge read the same.
The services never import each other, so this compares the two data files.
"""

import csv
import json
from pathlib import Path

SERVICES = Path(__file__).resolve().parent.parent / "services"


def test_every_orderable_test_has_the_billing_catalogue_name_of_its_code() -> None:
    with (SERVICES / "billing" / "catalogue.csv").open(encoding="utf-8", newline="") as file:
        catalogue = {row["hospital_code"]: (row["name_zh"], row["name_en"]) for row in csv.DictReader(file)}
    tests = json.loads((SERVICES / "results" / "tests.json").read_text(encoding="utf-8"))
    names = {test["code"]: (test["name_zh"], test["name_en"]) for test in tests}
    assert names.keys() <= catalogue.keys()
    assert {code: catalogue[code] for code in names} == names
