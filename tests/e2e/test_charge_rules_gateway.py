"""Issue 12's "every charging rule has a test through the gateway, refusals visible to the client", rule
kind by rule kind and both ways round, with the real processes: the 409 problem+json a cashier gets
names the reason, the rule (as `GET /v1/charge-rules` lists it) and its figures; nothing is charged;
the key is not used up; `charge.refused` reaches the hub and the patient's own app; a refused order
from results is on `/v1/rejected-charges` and at the hub; and a rule uploaded as data refuses through
the gateway until the seed rules are loaded back.

(tests/e2e/test_charging_rules.py has each reason once, one way round; these are the cells it leaves.)
"""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.billing.config import CHARGE_RULES_PATH
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    charges_of_visit,
    eventually,
    ok,
    patient_session,
    register_patient,
    unique_department,
)

WARD_BED = "110900001"  # 普通病房床位费: one a day, inpatients only
ICU_BED = "110900004"  # 重症监护床位费: one a day, inpatients only
DEBRIDEMENT, DRESSING = "311201001", "120600001"  # 清创缝合 includes that day's 换药
NURSING_I, NURSING_II = "120100002", "120100003"  # one nursing grade a day
BLOOD_GROUP = "260000002"  # 血型鉴定: once a stay
HEAD_CT = "210300001"  # 头颅CT平扫: orderable at results, one a day
INFUSION = "120400006"  # 静脉输液: no rule in the seed

# (case, visit kind, items charged first, the item refused, its quantity, reason, rule, fields)
CASES = [
    ("bed twice a day", "inpatient", [WARD_BED], WARD_BED, 1, "max-per-day-exceeded",
     ("max_per_day", WARD_BED, None), {"max_quantity": 1, "already_charged": 1}),
    ("two bed-days in one line", "inpatient", [], WARD_BED, 2, "max-per-day-exceeded",
     ("max_per_day", WARD_BED, None), {"max_quantity": 1, "already_charged": 0}),
    ("dressing after debridement", "outpatient", [DEBRIDEMENT], DRESSING, 1, "included-in-charged-item",
     ("includes", DEBRIDEMENT, DRESSING), {"other_item_code": DEBRIDEMENT}),
    ("debridement after dressing", "outpatient", [DRESSING], DEBRIDEMENT, 1, "includes-charged-item",
     ("includes", DEBRIDEMENT, DRESSING), {"other_item_code": DRESSING}),
    ("nursing II after I", "inpatient", [NURSING_I], NURSING_II, 1, "mutually-exclusive",
     ("excludes", NURSING_I, NURSING_II), {"other_item_code": NURSING_I}),
    ("nursing I after II", "inpatient", [NURSING_II], NURSING_I, 1, "mutually-exclusive",
     ("excludes", NURSING_I, NURSING_II), {"other_item_code": NURSING_II}),
    ("blood group twice a stay", "inpatient", [BLOOD_GROUP], BLOOD_GROUP, 1, "max-per-stay-exceeded",
     ("max_per_stay", BLOOD_GROUP, None), {"max_quantity": 1, "already_charged": 1}),
    ("ward bed for an outpatient", "outpatient", [], WARD_BED, 1, "visit-kind-not-allowed",
     ("visit_kinds", WARD_BED, None), {"visit_kind": "outpatient", "allowed_kinds": ["inpatient"]}),
    ("ICU bed for an emergency", "emergency", [], ICU_BED, 1, "visit-kind-not-allowed",
     ("visit_kinds", ICU_BED, None), {"visit_kind": "emergency", "allowed_kinds": ["inpatient"]}),
]  # fmt: skip


def keyed(key: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": key or str(uuid.uuid4())}


def patient_visit(gateway: Gateway, kind: str) -> dict[str, Any]:
    """An identified patient (so their own app can be opened) with one visit of `kind`."""
    person = register_patient(gateway.his)
    body = {"patient_id": person["id"], "kind": kind, "department": unique_department()}
    visit = ok(gateway.his.post("/v1/visits", json=body), 201)
    return {"person": person, "visit": visit}


def charge(
    gateway: Gateway, visit_id: str, item: str, quantity: int = 1, key: str | None = None
) -> httpx.Response:
    body = {"visit_id": visit_id, "item_code": item, "quantity": quantity}
    return gateway.cashier.post("/v1/charges", json=body, headers=keyed(key))


def refusals_at_hub(
    client: httpx.Client, visit_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The hub's `charge.refused` events about one visit, as `client` may read them (paged)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        params: dict[str, str | int] = {"type": "charge.refused", "after": after, "limit": 100}
        page = ok(client.get("/v1/events", params=params, headers=headers))
        if not page["events"]:
            return found
        found += [event for event in page["events"] if event["visit_id"] == visit_id]
        after = page["next_after"]


@pytest.fixture(scope="module")
def rules(gateway: Gateway) -> dict[tuple[str, str, str | None], int]:
    """The rules in force, as the gateway publishes them: (rule, item, other item) -> rule id."""
    listed = ok(gateway.cashier.get("/v1/charge-rules"))["rules"]
    return {(r["rule"], r["item_code"], r["other_item_code"]): r["id"] for r in listed}


@pytest.mark.parametrize(
    ("first", "visit_kind", "before", "item", "quantity", "reason", "rule", "fields"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_each_rule_refuses_through_the_gateway_visibly_to_cashier_hub_and_patient(
    gateway: Gateway,
    rules: dict[tuple[str, str, str | None], int],
    first: str,
    visit_kind: str,
    before: list[str],
    item: str,
    quantity: int,
    reason: str,
    rule: tuple[str, str, str | None],
    fields: dict[str, Any],
) -> None:
    case = patient_visit(gateway, visit_kind)
    visit_id = case["visit"]["id"]
    for earlier in before:
        ok(charge(gateway, visit_id, earlier), 201)
    # What the account holds before the refusal: those, and the consultation fee of a visit that has one.
    expected = len(before) + (0 if visit_kind == "inpatient" else 1)
    charged = charges_of_visit(gateway, visit_id, at_least=expected) if expected else []

    key = str(uuid.uuid4())
    problem = assert_problem(charge(gateway, visit_id, item, quantity, key=key), 409)
    assert problem["type"].endswith("/charge-refused"), problem
    assert (problem["reason"], problem["rule_id"], problem["item_code"]) == (reason, rules[rule], item)
    assert {name: problem[name] for name in fields} == fields
    again = charge(gateway, visit_id, item, quantity, key=key)  # a refusal is never stored under the key
    assert assert_problem(again, 409)["reason"] == reason
    account = ok(gateway.cashier.get(f"/v1/visits/{visit_id}/account"))
    assert sorted(c["id"] for c in account["charges"]) == sorted(c["id"] for c in charged)

    def announced() -> list[dict[str, Any]] | None:
        found = refusals_at_hub(gateway.his, visit_id)
        return found if len(found) >= 2 else None

    events = eventually(announced, what="both refusals as charge.refused at the hub")
    for event in events:
        data = event["data"]
        assert (data["reason"], data["rule_id"], data["item_code"]) == (reason, rules[rule], item)
        assert (data["quantity"], data["source"], data["order_id"]) == (quantity, "api", None)
    # The patient's own app sees its refusals; another patient's app does not.
    mine = {"x-patient-token": patient_session(gateway, case["person"])["token"]}
    assert [e["id"] for e in refusals_at_hub(gateway.app, visit_id, mine)] == [e["id"] for e in events]
    stranger = {"x-patient-token": patient_session(gateway, register_patient(gateway.his))["token"]}
    assert refusals_at_hub(gateway.app, visit_id, stranger) == []


def test_a_refused_key_posts_once_the_blocking_charge_is_reversed(gateway: Gateway) -> None:
    visit_id = patient_visit(gateway, "inpatient")["visit"]["id"]
    bed = ok(charge(gateway, visit_id, WARD_BED), 201)
    key = str(uuid.uuid4())
    assert (
        assert_problem(charge(gateway, visit_id, WARD_BED, key=key), 409)["reason"] == "max-per-day-exceeded"
    )
    correction = {"reason": "床位费重复录入", "operator": "护士长 李四"}
    ok(gateway.cashier.post(f"/v1/charges/{bed['id']}/reversal", json=correction, headers=keyed()), 201)
    posted = ok(charge(gateway, visit_id, WARD_BED, key=key), 201)
    retried = charge(gateway, visit_id, WARD_BED, key=key)
    assert ok(retried, 201)["id"] == posted["id"] and retried.headers["idempotent-replayed"] == "true"
    lines = ok(gateway.cashier.get(f"/v1/visits/{visit_id}/account"))["charges"]
    assert sorted(c["amount_fen"] for c in lines) == [-3000, 3000, 3000]


def test_a_refused_order_is_on_the_rejected_charges_at_the_hub_and_in_the_patients_app(
    gateway: Gateway, rules: dict[tuple[str, str, str | None], int]
) -> None:
    case = patient_visit(gateway, "emergency")
    visit_id = case["visit"]["id"]
    first = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit_id, "test_code": HEAD_CT}), 201)
    second = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit_id, "test_code": HEAD_CT}), 201)

    def rejected() -> list[dict[str, Any]] | None:
        return ok(gateway.cashier.get("/v1/rejected-charges", params={"visit_id": visit_id})) or None

    [rejection] = eventually(rejected, what="the second head CT on /v1/rejected-charges")
    assert (rejection["order_id"], rejection["reason"]) == (second["id"], "max-per-day-exceeded")
    [event] = eventually(lambda: refusals_at_hub(gateway.his, visit_id), what="charge.refused at the hub")
    data = event["data"]
    assert (data["order_id"], data["source"], data["reason"]) == (
        second["id"],
        "results",
        "max-per-day-exceeded",
    )
    assert data["rule_id"] == rules[("max_per_day", HEAD_CT, None)]
    mine = {"x-patient-token": patient_session(gateway, case["person"])["token"]}
    assert [e["id"] for e in refusals_at_hub(gateway.app, visit_id, mine)] == [event["id"]]
    ordered = [c["order_id"] for c in charges_of_visit(gateway, visit_id, at_least=2) if c["order_id"]]
    assert ordered == [first["id"]]


@pytest.fixture
def seed_rules_restored(gateway: Gateway) -> Iterator[bytes]:
    """The seed rule file; loaded back after the test, whatever the test uploaded."""
    seed = CHARGE_RULES_PATH.read_bytes()
    yield seed
    ok(
        gateway.admin.post("/v1/charge-rule-versions", content=seed, headers={"content-type": "text/csv"}),
        201,
    )


def test_a_rule_uploaded_as_data_refuses_through_the_gateway(
    gateway: Gateway, seed_rules_restored: bytes
) -> None:
    visit_id = patient_visit(gateway, "outpatient")["visit"]["id"]
    ok(charge(gateway, visit_id, INFUSION), 201)  # no rule for infusions in the seed
    as_csv = {"content-type": "text/csv"}
    uploaded = seed_rules_restored + f"max_per_day,{INFUSION},,1,,一日一组输液\n".encode()
    assert_problem(gateway.cashier.post("/v1/charge-rule-versions", content=uploaded, headers=as_csv), 403)
    loaded = ok(gateway.admin.post("/v1/charge-rule-versions", content=uploaded, headers=as_csv), 201)
    [new_rule] = [r for r in loaded["rules"] if r["item_code"] == INFUSION]
    problem = assert_problem(charge(gateway, visit_id, INFUSION), 409)
    assert (problem["reason"], problem["rule_id"]) == ("max-per-day-exceeded", new_rule["id"])

    ok(gateway.admin.post("/v1/charge-rule-versions", content=seed_rules_restored, headers=as_csv), 201)
    ok(charge(gateway, visit_id, INFUSION), 201)  # the rule is gone with its version
