"""The price catalogue: the seed file, its reload rules, and the codes other services depend on."""

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, internal_headers, service_client
from services.billing.app import create_app
from services.billing.catalogue import read_catalogue
from services.billing.config import CATALOGUE_PATH
from services.billing.models import BillingTable
from tests.billing.conftest import billing_settings
from tests.billing.factories import INFUSION, account, assert_no_floats, keyed, new_visit, post_charge

# Codes registration and results send in their events (registration fees, test codes).
REQUIRED = {
    "110200001": ("普通门诊诊察费", 2000),
    "110200005": ("急诊诊察费", 2500),
    "250101015": None,
    "250301001": None,
    "250302001": None,
    "250305002": None,
    "250305005": None,
    "250307001": None,
    "250403001": None,
    "250203001": None,
    "250501001": None,
    "210102015": None,
    "210300001": None,
    "220201001": None,
    "310701001": None,
}


def test_catalogue_holds_the_codes_other_services_depend_on(client: TestClient) -> None:
    items = client.get("/catalogue").json()
    assert_no_floats(items)
    by_code = {item["code"]: item for item in items}
    assert REQUIRED.keys() <= by_code.keys()
    for code, expected in REQUIRED.items():
        if expected:
            assert (by_code[code]["name_zh"], by_code[code]["price_fen"]) == expected
    assert {item["category"] for item in items} == {
        "registration", "lab", "imaging", "treatment", "drug", "bed", "nursing"
    }  # fmt: skip
    assert all(type(item["price_fen"]) is int and item["price_fen"] > 0 for item in items)


def test_one_item_a_category_and_an_unknown_code(client: TestClient) -> None:
    item = client.get("/catalogue/110200005").json()
    assert item == {
        "code": "110200005",
        "name_zh": "急诊诊察费",
        "name_en": "Emergency consultation",
        "unit": "次",
        "price_fen": 2500,
        "category": "registration",
        "active": True,
    }
    beds = client.get("/catalogue", params={"category": "bed"}).json()
    assert beds and {b["category"] for b in beds} == {"bed"}
    missing = client.get("/catalogue/000000000")
    assert missing.status_code == 404 and missing.json()["type"].endswith("/item-not-found")


def test_reload_retires_missing_items_and_never_reprices_posted_charges(
    tmp_path: Path,
    data_dir: Path,
    registration: httpx.Client,
    registration_url: str,
    results_feed: FakeFeed,
) -> None:
    lines = CATALOGUE_PATH.read_text(encoding="utf-8").splitlines()
    repriced = [line.replace(",500,treatment", ",600,treatment") for line in lines if "YP0010" not in line]
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("\n".join(repriced) + "\n", encoding="utf-8")
    feeds = {"registration_url": registration_url, "results_url": results_feed.url}
    with service_client(create_app(billing_settings(data_dir, **feeds)), BillingTable.metadata) as first:
        visit = new_visit(registration, first)
        infusion = post_charge(first, visit["id"], INFUSION)

    # A restart with the new price list, on the same tables.
    app = create_app(billing_settings(data_dir, catalogue_path=catalogue, **feeds))
    with TestClient(
        app, headers=internal_headers(audience="billing"), raise_server_exceptions=False
    ) as again:
        assert again.get("/catalogue/YP0010").json()["active"] is False
        assert "YP0010" not in {i["code"] for i in again.get("/catalogue").json()}
        assert "YP0010" in {i["code"] for i in again.get("/catalogue?include_inactive=true").json()}
        refused = again.post(
            "/charges", json={"visit_id": visit["id"], "item_code": "YP0010", "quantity": 1}, headers=keyed()
        )
        assert refused.status_code == 422 and refused.json()["type"].endswith("/unknown-item")
        assert again.get(f"/catalogue/{INFUSION}").json()["price_fen"] == 600
        charges = {c["id"]: c for c in account(again, visit["id"])["charges"]}
        assert charges[infusion["id"]]["unit_price_fen"] == 500


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("120400006,静脉输液,IV infusion,组,5.5,treatment", "price_fen"),
        ("120400006,静脉输液,IV infusion,组,-500,treatment", "price_fen"),
        ("120400006,静脉输液,IV infusion,组,500,surgery", "category"),
        ("110200001,重复,Duplicate,次,2000,registration", "duplicate"),
    ],
)
def test_a_bad_catalogue_file_is_refused_whole(tmp_path: Path, row: str, problem: str) -> None:
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text(
        "code,name_zh,name_en,unit,price_fen,category\n110200001,普通门诊诊察费,Consultation,次,2000,registration\n"
        + row
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=problem):
        read_catalogue(catalogue)


def test_the_seed_file_loads() -> None:
    rows = read_catalogue(CATALOGUE_PATH)
    assert len(rows) >= 40
