"""The price catalogue as data: the seed file, uploads checked row by row, versions, prices by service
date, drug concessions in integer fen, and the codes other services depend on."""

from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from kit.clock import hospital_date, utcnow
from kit.testing import FakeFeed, internal_headers, service_client
from services.billing.app import create_app
from services.billing.catalogue import COLUMNS, concession_price, read_catalogue
from services.billing.config import CATALOGUE_PATH
from services.billing.models import BillingTable
from tests.billing.conftest import billing_settings
from tests.billing.factories import (
    INFUSION,
    account,
    assert_no_floats,
    backdate_account,
    keyed,
    new_visit,
    post_charge,
)

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
HEADER = ",".join(COLUMNS)
INFUSION_ROW = (
    "120400006,120400006,静脉输液(第一组),Intravenous infusion (first bag),组,treatment,甲,list,{price},,,"
    "{start},{end}"
)


def seed_lines() -> list[str]:
    return CATALOGUE_PATH.read_text(encoding="utf-8").splitlines()


def upload(client: TestClient, content: str | bytes) -> httpx.Response:
    body = content.encode() if isinstance(content, str) else content
    return client.post("/catalogue-versions", content=body, headers={"content-type": "text/csv"})


def repriced_seed(infusion_rows: list[str]) -> str:
    """The seed file with the infusion's row replaced by `infusion_rows`."""
    kept = [line for line in seed_lines() if not line.startswith(f"{INFUSION},")]
    return "\n".join(kept + infusion_rows) + "\n"


def test_catalogue_holds_the_codes_other_services_depend_on(client: TestClient) -> None:
    items = client.get("/catalogue").json()
    assert_no_floats(items)
    by_code = {item["code"]: item for item in items}
    assert REQUIRED.keys() <= by_code.keys()
    for code, expected in REQUIRED.items():
        if expected:
            assert (by_code[code]["name_zh"], by_code[code]["price_fen"]) == expected
    assert {item["category"] for item in items} == {
        "registration", "examination", "laboratory", "imaging", "treatment", "nursing", "bed", "drug",
        "material",
    }  # fmt: skip
    assert {item["insurance_class"] for item in items} == {"甲", "乙", "丙"}
    assert all(type(item["price_fen"]) is int and item["price_fen"] > 0 for item in items)


def test_one_item_a_category_and_an_unknown_code(client: TestClient) -> None:
    item = client.get("/catalogue/110200005").json()
    assert item == {
        "code": "110200005",
        "national_code": "110200005",
        "name_zh": "急诊诊察费",
        "name_en": "Emergency consultation",
        "unit": "次",
        "price_fen": 2500,
        "category": "registration",
        "insurance_class": "甲",
        "pricing": "list",
        "base_price_fen": None,
        "concession_percent": None,
        "effective_from": "2024-01-01",
        "effective_to": None,
        "catalogue_version": item["catalogue_version"],
        "active": True,
    }
    beds = client.get("/catalogue", params={"category": "bed"}).json()
    assert beds and {b["category"] for b in beds} == {"bed"}
    missing = client.get("/catalogue/000000000")
    assert missing.status_code == 404 and missing.json()["type"].endswith("/item-not-found")


def test_the_published_list_shows_the_prices_of_the_day_asked(client: TestClient) -> None:
    """The seed's general ward bed cost 2500 fen until 2025-12-31, 3000 since."""
    ward_bed = "110900001"
    assert client.get(f"/catalogue/{ward_bed}").json()["price_fen"] == 3000
    then = client.get(f"/catalogue/{ward_bed}", params={"date": "2025-06-01"}).json()
    assert (then["price_fen"], then["effective_to"]) == (2500, "2025-12-31")
    listed = {i["code"]: i for i in client.get("/catalogue", params={"date": "2025-06-01"}).json()}
    assert listed[ward_bed]["price_fen"] == 2500
    assert "110900001" in listed and len(listed) == len(client.get("/catalogue").json())


def test_drugs_are_priced_by_their_concession_or_at_purchase_price(client: TestClient) -> None:
    ceftriaxone = client.get("/catalogue/YP0003").json()  # 10 % below 1333 fen = 1199.7 → 1200
    assert (ceftriaxone["pricing"], ceftriaxone["base_price_fen"]) == ("concession", 1333)
    assert (ceftriaxone["concession_percent"], ceftriaxone["price_fen"]) == ("10", 1200)
    saline = client.get("/catalogue/YP0001").json()  # 零加成: the purchase price
    assert (saline["pricing"], saline["base_price_fen"], saline["price_fen"]) == ("zero_markup", 350, 350)
    assert client.get("/catalogue/HC0001").json()["category"] == "material"


def test_concession_rounds_half_up_to_a_whole_fen() -> None:
    assert concession_price(1255, 1000) == 1130  # 1129.5 → 1130
    assert concession_price(1254, 1000) == 1129  # 1128.6 → 1129
    assert concession_price(1000, 1250) == 875  # 12.5 % below


@given(st.integers(min_value=1, max_value=2**31 - 1), st.integers(min_value=1, max_value=9999))
def test_concession_is_the_exact_price_rounded_half_up(retail_fen: int, basis_points: int) -> None:
    exact = Fraction(retail_fen * (10_000 - basis_points), 10_000)
    price = concession_price(retail_fen, basis_points)
    assert type(price) is int
    assert price - Fraction(1, 2) <= exact < price + Fraction(1, 2)


def test_an_upload_reports_every_bad_row_with_its_line_and_loads_nothing(client: TestClient) -> None:
    before = client.get("/catalogue").json()
    versions = client.get("/catalogue-versions").json()
    good = "110200001,110200001,普通门诊诊察费,Consultation,次,registration,甲,list,2000,,,2024-01-01,"
    rows = [
        HEADER,
        good,  # line 2
        INFUSION_ROW.format(price="5.5", start="2024-01-01", end=""),  # 3: not integer fen
        INFUSION_ROW.format(price="-500", start="2024-01-01", end=""),  # 4: negative
        "120400002,120400002,肌内注射,IM injection,次,surgery,甲,list,300,,,2024-01-01,",  # 5: category
        "120400003,120400003,皮下注射,SC injection,次,treatment,丁,list,300,,,2024-01-01,",  # 6: class
        "YP0001,XB05BB01,氯化钠,Saline,袋,drug,甲,concession,,350,,2024-01-01,",  # 7: no percent
        "120400004,120400004,注射,Injection,次,treatment,甲,zero_markup,,300,,2024-01-01,",  # 8: not a drug
        "120400005,120400005,注射,Injection,次,treatment,甲,list,300,,,2024-02-01,2024-01-01",  # 9: backwards
        "110200001,110200001,普通门诊诊察费,Consultation,次,registration,甲,list,2500,,,2025-01-01,",  # 10
        "120400007,120400007,注射,Injection,次",  # 11: short
    ]
    response = upload(client, "\n".join(rows) + "\n")

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/catalogue-invalid")
    lines = sorted({error["line"] for error in problem["errors"]})
    assert lines == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    by_line = {error["line"]: error for error in problem["errors"]}
    assert by_line[3]["column"] == by_line[4]["column"] == "price_fen"
    assert by_line[5]["column"] == "category" and by_line[6]["column"] == "insurance_class"
    assert "line 2" in by_line[10]["message"]  # overlaps the open-ended period on line 2
    assert client.get("/catalogue").json() == before
    assert client.get("/catalogue-versions").json() == versions


def test_odd_uploads_are_refused_with_their_line(client: TestClient) -> None:
    versions = client.get("/catalogue-versions").json()
    bad_header = upload(client, "code,price\n1,2\n")
    not_utf8 = upload(client, HEADER.encode() + b"\n" + b"\xff\xfe,x\n")
    empty = upload(client, HEADER + "\n")
    control = upload(
        client,
        HEADER + "\n" + INFUSION_ROW.replace("组", "组\x01").format(price=1, start="2024-01-01", end=""),
    )
    huge = upload(client, b"x" * (1_048_576 + 1))

    for response, line in [(bad_header, 1), (not_utf8, 2), (empty, 1), (control, 2)]:
        assert response.status_code == 422, response.text
        assert {e["line"] for e in response.json()["errors"]} == {line}
    assert huge.status_code == 413 and huge.headers["content-type"] == "application/problem+json"
    assert client.get("/catalogue-versions").json() == versions


def test_uploading_needs_the_catalogue_write_scope(client: TestClient) -> None:
    cashier = internal_headers(scopes={"billing:read", "billing:write"}, audience="billing")
    response = client.post("/catalogue-versions", content="\n".join(seed_lines()).encode(), headers=cashier)
    assert response.status_code == 403
    assert len(client.get("/catalogue-versions").json()) == 1


def test_a_price_change_applies_by_service_date_and_old_charges_keep_their_price(
    registration: httpx.Client, client: TestClient
) -> None:
    today = hospital_date(utcnow())
    yesterday = today - timedelta(days=1)
    visit = new_visit(registration, client, kind="inpatient", department="surgery")
    backdate_account(client, visit["id"], days=2)
    before_change = post_charge(client, visit["id"], INFUSION)
    assert before_change["unit_price_fen"] == 500

    # From today the infusion costs 600 fen; until yesterday it cost 500 (a new version, both periods).
    response = upload(
        client,
        repriced_seed(
            [
                INFUSION_ROW.format(price=500, start="2024-01-01", end=yesterday.isoformat()),
                INFUSION_ROW.format(price=600, start=today.isoformat(), end=""),
            ]
        ),
    )
    assert response.status_code == 201, response.text
    new_version = response.json()
    assert new_version["current"] is True and new_version["source"] == "upload"

    back_dated = post_charge(client, visit["id"], INFUSION, service_date=yesterday.isoformat())
    todays = post_charge(client, visit["id"], INFUSION, 2)

    assert back_dated["unit_price_fen"] == 500
    assert (todays["unit_price_fen"], todays["amount_fen"]) == (600, 1200)
    charges = {c["id"]: c for c in account(client, visit["id"])["charges"]}
    assert charges[before_change["id"]]["unit_price_fen"] == 500  # an old bill keeps its price
    assert client.get(f"/catalogue/{INFUSION}").json()["price_fen"] == 600
    assert (
        client.get(f"/catalogue/{INFUSION}", params={"date": yesterday.isoformat()}).json()["price_fen"]
        == 500
    )

    versions = client.get("/catalogue-versions").json()
    assert [v["id"] for v in versions] == [new_version["id"], versions[1]["id"]]
    assert [v["current"] for v in versions] == [True, False]
    old = client.get(f"/catalogue-versions/{versions[1]['id']}").json()
    assert [(e["price_fen"], e["effective_to"]) for e in old["entries"] if e["code"] == INFUSION] == [
        (500, None)
    ]
    assert client.get("/catalogue-versions/999999").status_code == 404


def test_a_day_outside_every_price_period_is_refused(registration: httpx.Client, client: TestClient) -> None:
    start = hospital_date(utcnow()) + timedelta(days=30)
    response = upload(
        client, repriced_seed([INFUSION_ROW.format(price=600, start=start.isoformat(), end="")])
    )
    assert response.status_code == 201, response.text
    visit = new_visit(registration, client)

    refused = client.post(
        "/charges", json={"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1}, headers=keyed()
    )

    assert refused.status_code == 422 and refused.json()["type"].endswith("/not-priced-on-date")
    assert client.get(f"/catalogue/{INFUSION}").json()["active"] is True  # listed, just not priced today
    assert INFUSION not in {i["code"] for i in client.get("/catalogue").json()}


def test_restarts_add_versions_only_for_a_changed_file_and_keep_uploads(
    tmp_path: Path,
    data_dir: Path,
    registration: httpx.Client,
    registration_url: str,
    results_feed: FakeFeed,
) -> None:
    repriced = [
        line.replace(",500,,,", ",600,,,") if line.startswith(INFUSION) else line for line in seed_lines()
    ]
    retired = [line for line in repriced if not line.startswith("YP0010,")]
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("\n".join(retired) + "\n", encoding="utf-8")
    feeds = {"registration_url": registration_url, "results_url": results_feed.url}
    with service_client(create_app(billing_settings(data_dir, **feeds)), BillingTable.metadata) as first:
        visit = new_visit(registration, first)
        infusion = post_charge(first, visit["id"], INFUSION)

    def restarted(path: Path) -> TestClient:
        app = create_app(billing_settings(data_dir, catalogue_path=path, **feeds))
        return TestClient(app, headers=internal_headers(audience="billing"), raise_server_exceptions=False)

    with restarted(catalogue) as again:  # a changed file: a new version
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
        assert len(again.get("/catalogue-versions").json()) == 2
        assert upload(again, "\n".join(seed_lines()) + "\n").status_code == 201  # back to 500 by upload

    with restarted(catalogue) as once_more:  # the same file again: no version, the upload stays
        assert len(once_more.get("/catalogue-versions").json()) == 3
        assert once_more.get(f"/catalogue/{INFUSION}").json()["price_fen"] == 500


def test_the_seed_file_loads() -> None:
    rows = read_catalogue(CATALOGUE_PATH.read_bytes())
    assert len(rows) >= 50
    assert all(line >= 2 for line, _ in rows)
    assert date(2024, 1, 1) in {row.effective_from for _, row in rows}
