"""Issue 11's promise, route by route and channel by channel, through the real gateway and services:
every results route a patient-channel client (kiosk, app, phone) can reach, for patient B's session
on patient A's records (404 exactly as a record that does not exist), for A's own session on A's
reports that must not be released (preliminary, unverified, withheld, unpaid), with the audit row of
each success and each denial; then expired tokens, rate limits and lockouts for each kind that holds
a session.

One system of its own, in a hospital that releases reports only once paid, so that every reason to
hold a report back can be set up side by side: a released report (final, verified, paid) beside one
that fails exactly one condition.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.patients import mint_patient_token
from patientflow.devkeys import read_dev_internal_secret
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    eventually,
    new_slip,
    ok,
    one_time_code,
    patient_session,
    register_patient,
    unique_department,
)
from tests.e2e.conftest import PAYING_ENV, running_gateway

SCHEMA_PREFIX = "e2e_matrix_"
CHANNELS = ("kiosk", "app", "phone")  # the client kinds that act for one patient
TECHNICIAN = "李技师"
# One test item per report, so no charging or recognition rule joins two of them.
ITEMS = {
    "released": "250101015",  # 血细胞分析: final, verified, paid
    "preliminary": "250301001",  # 尿常规: paid, only preliminary
    "unverified": "250302001",  # 粪便常规: paid, final, nobody verified it
    "withheld": "250305002",  # 肝功能: paid, final, verified, withheld by the doctor
    "printed_then_withheld": "250305005",  # 肾功能: printed by A's kiosk while released, then withheld
    "printed_then_cancelled": "250403001",  # C反应蛋白: printed while released, then cancelled (作废)
    "unpaid": "250307001",  # 血糖: final, verified, ordered after the payment, never paid
}
HELD = ("preliminary", "unverified", "withheld", "printed_then_withheld", "printed_then_cancelled", "unpaid")


def report_body(status: str = "final", *, verified: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": status,
        "conclusion": "正常",
        "observations": [{"code": "X", "name": "项目", "value": "1", "unit": "g/L"}],
    }
    return body | ({"verified_by": TECHNICIAN} if verified and status == "final" else {})


@pytest.fixture(scope="module")
def paying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The whole system, in a hospital that hands out reports only once paid."""
    data_dir = tmp_path_factory.mktemp("matrix-system")
    with running_gateway(data_dir, PAYING_ENV, schema_prefix=SCHEMA_PREFIX) as clients:
        yield clients


class Session:
    """A patient-channel client acting for one patient (its dev client and a fresh patient token)."""

    def __init__(self, gateway: Gateway, kind: str, person: dict[str, Any]) -> None:
        self.kind = kind
        self.client = gateway.clients[kind]
        self.headers = {"x-patient-token": patient_session(gateway, person, kind)["token"]}

    def call(self, method: str, path: str) -> httpx.Response:
        body: dict[str, Any] | None = {} if method == "POST" else None
        return self.client.request(method, path, json=body, headers=self.headers)


def new_visit(gateway: Gateway, person: dict[str, Any]) -> dict[str, Any]:
    body = {
        "patient_id": person["id"],
        "kind": "outpatient",
        "department": unique_department(),
        "payment_mode": "settle_later",  # the lab starts at once; the cashier is paid later
    }
    return ok(gateway.his.post("/v1/visits", json=body), 201)  # type: ignore[no-any-return]


def order(gateway: Gateway, visit_id: str, item: str) -> dict[str, Any]:
    body = {"visit_id": visit_id, "test_code": item}
    return ok(gateway.doctor.post("/v1/orders", json=body), 201)  # type: ignore[no-any-return]


def charged(gateway: Gateway, visit_id: str, items: list[str]) -> None:
    def probe() -> bool:
        account = gateway.cashier.get(f"/v1/visits/{visit_id}/account")
        codes = {c["item_code"] for c in account.json()["charges"]} if account.status_code == 200 else set()
        return set(items) <= codes

    eventually(probe, what=f"billing to charge {items}")


def released_to(session: Session, person: dict[str, Any]) -> set[str]:
    listed = ok(session.call("GET", f"/v1/patients/{person['id']}/released-reports"))
    return {r["id"] for r in listed}


@pytest.fixture(scope="module")
def world(paying: Gateway) -> dict[str, Any]:
    """Patient A's visit with one report per state (`ITEMS`) and one printed copy; patient B."""
    gateway = paying
    a, b = register_patient(gateway.his, name="张三"), register_patient(gateway.his, name="李四")
    visit = new_visit(gateway, a)
    new_visit(gateway, b)  # B's own slip for the kiosk
    before_payment = [k for k in ITEMS if k != "unpaid"]
    orders = {k: order(gateway, visit["id"], ITEMS[k]) for k in before_payment}
    reports: dict[str, str] = {}
    for key, placed in orders.items():
        body = report_body("preliminary" if key == "preliminary" else "final", verified=key != "unverified")
        posted = ok(gateway.lab.post(f"/v1/orders/{placed['id']}/reports", json=body), 201)
        reports[key] = posted["id"]
    charged(gateway, visit["id"], [ITEMS[k] for k in before_payment])
    paid = gateway.cashier.post(
        "/v1/payments",
        json={"visit_id": visit["id"], "method": "wechat"},
        headers={"idempotency-key": str(uuid.uuid4())},
    )
    ok(paid, 201)
    a_kiosk = Session(gateway, "kiosk", a)
    printed_before = ("printed_then_withheld", "printed_then_cancelled")
    eventually(
        lambda: released_to(a_kiosk, a) >= {reports[k] for k in ("released", *printed_before)},
        what="results to read charge.paid",
    )
    prints = {
        k: ok(a_kiosk.call("POST", f"/v1/reports/{reports[k]}/prints"), 201)["id"] for k in printed_before
    }
    for key in ("withheld", "printed_then_withheld"):
        hold = {"reason": "需当面告知病情"}
        ok(gateway.doctor.post(f"/v1/reports/{reports[key]}/withhold", json=hold))
    cancel = {"reason": "标本溶血"}
    ok(gateway.lab.post(f"/v1/reports/{reports['printed_then_cancelled']}/cancellation", json=cancel))
    orders["unpaid"] = order(gateway, visit["id"], ITEMS["unpaid"])
    unpaid = ok(gateway.lab.post(f"/v1/orders/{orders['unpaid']['id']}/reports", json=report_body()), 201)
    reports["unpaid"] = unpaid["id"]
    charged(gateway, visit["id"], [ITEMS["unpaid"]])  # charged, so its unpaid state is billing's own
    return {
        "a": a,
        "b": b,
        "visit": visit["id"],
        "orders": {k: o["id"] for k, o in orders.items()},
        "reports": reports,
        "print": prints["printed_then_withheld"],
        "prints": prints,
    }


def routes(world: dict[str, Any], report: str) -> list[tuple[str, str, str]]:
    """(method, path of A's record, path of a record that does not exist) for every results route
    a patient-channel client can reach (gateway/routes.py PATIENT_BINDING), with A's `report`."""
    a, visit, none = world["a"]["id"], world["visit"], str(uuid.uuid4())
    report_id, order_id = world["reports"][report], world["orders"][report]
    return [
        ("GET", f"/v1/orders/{order_id}", f"/v1/orders/{none}"),
        ("GET", f"/v1/visits/{visit}/orders", f"/v1/visits/{none}/orders"),
        ("GET", f"/v1/visits/{visit}/reports", f"/v1/visits/{none}/reports"),
        ("GET", f"/v1/visits/{visit}/journey", f"/v1/visits/{none}/journey"),
        ("GET", f"/v1/patients/{a}/reports", f"/v1/patients/{none}/reports"),
        ("GET", f"/v1/reports/{report_id}", f"/v1/reports/{none}"),
        ("GET", f"/v1/patients/{a}/released-reports", f"/v1/patients/{none}/released-reports"),
        ("GET", f"/v1/reports/{report_id}/pdf", f"/v1/reports/{none}/pdf"),
        ("POST", f"/v1/reports/{report_id}/prints", f"/v1/reports/{none}/prints"),
        ("POST", f"/v1/visits/{visit}/prints", f"/v1/visits/{none}/prints"),
        ("GET", f"/v1/prints/{world['print']}/pdf", f"/v1/prints/{none}/pdf"),
    ]


def answer(response: httpx.Response, *ids: str) -> tuple[int, Any]:
    """Status and body, without what differs between any two requests (`instance`, the asked id)."""
    if response.headers.get("content-type", "").startswith("application/pdf"):
        return response.status_code, "a PDF"
    body = response.json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("instance", "visit_id")}
    return response.status_code, body


def trail(gateway: Gateway, patient_id: str, *, after: int = 0) -> list[dict[str, Any]]:
    """The patient's result-access audit rows newer than row `after` (the newest 100: the gateway's
    page cap; each test reads its own few dozen right after making them)."""
    params: dict[str, str | int] = {"patient_id": patient_id, "limit": 100}
    found = ok(gateway.admin.get("/v1/audit/result-access", params=params))
    return [row for row in found if row["id"] > after]


def last_row(gateway: Gateway, patient_id: str) -> int:
    return max((row["id"] for row in trail(gateway, patient_id)), default=0)


# --- patient B's sessions on patient A's records ----------------------------------------------------


@pytest.mark.parametrize("kind", CHANNELS)
def test_patient_bs_session_gets_as_records_exactly_as_records_that_do_not_exist(
    paying: Gateway, world: dict[str, Any], kind: str
) -> None:
    before = last_row(paying, world["a"]["id"])
    b_session = Session(paying, kind, world["b"])
    a_ids = [world["a"]["id"], world["visit"], world["print"], *world["reports"].values()]
    for method, path, missing in routes(world, "released"):
        got, nothing = b_session.call(method, path), b_session.call(method, missing)
        assert got.status_code in (200, 201, 403, 404), f"{kind} {method} {path}: {got.text}"
        assert answer(got) == answer(nothing), f"{kind} {method} {path}"
        for a_id in a_ids:  # (an id the path names may be echoed, as for the missing record)
            assert a_id in path or a_id not in got.text, f"{kind} {method} {path} names {a_id}"
    # Results answered the requests it was sent for B with a refusal, each audited with the kind.
    rows = trail(paying, world["a"]["id"], after=before)
    mine = [r for r in rows if r["acting_for"] == world["b"]["id"] and r["client"] == f"{kind}-dev"]
    expected = {"read_report", "released_reports", "read_pdf", "print", "print_visit", "print_pdf"}
    expected |= {"patient_reports", "visit_reports"}  # the lists, answered (empty) by results itself
    assert {r["action"] for r in mine} == expected
    assert {(r["outcome"], r["client_kind"], tuple(r["report_ids"])) for r in mine} == {("refused", kind, ())}


@pytest.mark.parametrize("kind", CHANNELS)
def test_a_refused_list_is_audited_too(paying: Gateway, world: dict[str, Any], kind: str) -> None:
    """`GET /patients/{A}/reports` and `GET /visits/{A's visit}/reports` for B: results itself checks the
    patient claim (the gateway used to refuse first, so results' audit never heard of the attempt). B
    gets an empty list, as for ids that do not exist, and the audit says `refused`."""
    b_session = Session(paying, kind, world["b"])
    for path in (f"/v1/patients/{world['a']['id']}/reports", f"/v1/visits/{world['visit']}/reports"):
        answer = b_session.call("GET", path)
        assert (answer.status_code, answer.json()) == (200, []), path
    rows = [r for r in trail(paying, world["a"]["id"]) if r["acting_for"] == world["b"]["id"]]
    refused = {r["action"] for r in rows if r["outcome"] == "refused" and r["client_kind"] == kind}
    assert {"patient_reports", "visit_reports"} <= refused


@pytest.mark.parametrize("kind", CHANNELS)
def test_staff_only_results_routes_stay_closed_to_every_channel(
    paying: Gateway, world: dict[str, Any], kind: str
) -> None:
    b_session = Session(paying, kind, world["b"])
    a, report = world["a"]["id"], world["reports"]["preliminary"]
    closed = [
        ("GET", "/v1/critical-values"),
        ("GET", "/v1/orders"),
        ("GET", "/v1/orders/overdue"),
        ("GET", "/v1/turnaround"),
        ("GET", f"/v1/patients/{a}/recognised-results?test_code={ITEMS['released']}"),
        ("GET", "/v1/recognition/duplicates?from_date=2026-01-01&to_date=2026-01-02"),
        ("GET", "/v1/audit/result-access"),
        ("POST", f"/v1/reports/{report}/verification"),
        ("POST", f"/v1/reports/{report}/unwithhold"),
    ]
    for method, path in closed:
        body = assert_problem(b_session.call(method, path), 403)
        assert a not in str(body), path


# --- patient A's own sessions: released reports only --------------------------------------------------


def seen(session: Session, world: dict[str, Any], key: str) -> dict[str, bool]:
    """Whether each patient-facing route gives A's `key` report to the session (prints are made)."""
    report_id, a, visit = world["reports"][key], world["a"]["id"], world["visit"]
    one = session.call("GET", f"/v1/reports/{report_id}")
    pdf = session.call("GET", f"/v1/reports/{report_id}/pdf")
    printed = session.call("POST", f"/v1/reports/{report_id}/prints")
    for refused in (one, pdf, printed):
        assert refused.status_code in (200, 201) or answer(refused) == answer(
            session.call("GET", f"/v1/reports/{uuid.uuid4()}")
        ), refused.text
    return {
        "patient": report_id in [r["id"] for r in ok(session.call("GET", f"/v1/patients/{a}/reports"))],
        "visit": report_id in [r["id"] for r in ok(session.call("GET", f"/v1/visits/{visit}/reports"))],
        "released": report_id in released_to(session, world["a"]),
        "report": one.status_code == 200,
        "pdf": pdf.status_code == 200,
        "print": printed.status_code == 201,
    }


@pytest.mark.parametrize("kind", CHANNELS)
def test_as_own_session_gets_the_released_report_and_never_a_held_back_one(
    paying: Gateway, world: dict[str, Any], kind: str
) -> None:
    before = last_row(paying, world["a"]["id"])
    session = Session(paying, kind, world["a"])
    reports = world["reports"]
    # Printing the slip prints released reports only, whichever channel asks first.
    slip = ok(session.call("POST", f"/v1/visits/{world['visit']}/prints"), 201)["prints"]
    assert {p["report_id"] for p in slip} <= {reports["released"]}
    everywhere = dict.fromkeys(("patient", "visit", "released", "report", "pdf", "print"), True)
    assert seen(session, world, "released") == everywhere
    for key in HELD:
        assert seen(session, world, key) == dict.fromkeys(everywhere, False), f"{kind}: {key}"
    # A copy printed before the doctor withheld or the lab cancelled the report goes with it.
    for print_id in world["prints"].values():
        assert answer(session.call("GET", f"/v1/prints/{print_id}/pdf")) == answer(
            session.call("GET", f"/v1/prints/{uuid.uuid4()}/pdf")
        )
    # The journey view asks results as this session: the released report only. (The phone line's key
    # lacks registration:read, which the journey needs: 403, whoever's visit.)
    journey = session.call("GET", f"/v1/visits/{world['visit']}/journey")
    assert journey.status_code == (403 if kind == "phone" else 200), journey.text
    assert (reports["released"] in journey.text) is (kind != "phone")
    assert not [key for key in HELD if reports[key] in journey.text], journey.text
    # Staff still see every report.
    for key in HELD:
        assert ok(paying.doctor.get(f"/v1/reports/{reports[key]}"))["id"] == reports[key]

    rows = [r for r in trail(paying, world["a"]["id"]) if r["client"] == f"{kind}-dev" and r["id"] > before]
    assert {r["client_kind"] for r in rows} == {kind}
    assert all(r["acting_for"] == world["a"]["id"] for r in rows)
    outcomes = {(r["action"], r["report_id"], r["outcome"]) for r in rows}
    released = reports["released"]
    assert {("read_report", released, "found"), ("read_pdf", released, "found")} <= outcomes
    assert ("print", released, "printed") in outcomes
    for key in HELD:
        for action in ("read_report", "read_pdf", "print"):
            assert (action, reports[key], "not_released") in outcomes, f"{kind}: {action} {key}"
    for key in world["prints"]:
        assert ("print_pdf", reports[key], "not_released") in outcomes, f"{kind}: print pdf {key}"
    # Lists are audited with what they gave: the released report, never a held-back one.
    for row in rows:
        assert set(row["report_ids"]) <= {released}, row


# --- expiry, rate limits and lockout, for each kind that holds a session -------------------------------


@pytest.mark.parametrize("kind", CHANNELS)
def test_an_expired_token_reaches_no_results_route(paying: Gateway, world: dict[str, Any], kind: str) -> None:
    secret = read_dev_internal_secret(paying.system.data_dir)
    assert secret is not None
    expired, _ = mint_patient_token(secret, client=f"{kind}-dev", patient=world["a"]["id"], lifetime=-1)
    headers = {"x-patient-token": expired}
    before = last_row(paying, world["a"]["id"])
    for method, path, _ in routes(world, "released"):
        response = paying.clients[kind].request(
            method, path, headers=headers, json={} if method == "POST" else None
        )
        assert assert_problem(response, 403)["type"].endswith("/patient-token-expired"), path
    assert trail(paying, world["a"]["id"], after=before) == []  # results never saw them


def own_client(gateway: Gateway, kind: str, **limits: Any) -> tuple[str, httpx.Client]:
    """A client of this test's own (never the development one other tests share), and its name."""
    name = f"{kind}-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "kind": kind, "scopes": ["results:read"]} | limits
    key = ok(gateway.admin.post("/v1/admin/clients", json=body), 201)["key"]
    headers = {"authorization": f"Bearer {key}"}
    return name, httpx.Client(base_url=gateway.admin.base_url, headers=headers, timeout=30)


@pytest.mark.parametrize("kind", CHANNELS)
def test_a_patient_channel_over_its_rate_limit_gets_429_and_results_is_not_asked(
    paying: Gateway, world: dict[str, Any], kind: str
) -> None:
    a, burst = world["a"], 6
    # One more request every 10,000 s: no refill within the test, however slow the machine.
    name, device = own_client(paying, kind, rate_limit_per_second=0.0001, rate_burst=burst)
    with device:
        token = patient_session(paying, a, kind, device=device)["token"]
        proofs = 1 if kind == "kiosk" else 2  # the slip; or the texted code asked for, then sent
        path = f"/v1/patients/{a['id']}/released-reports"
        answers = [device.get(path, headers={"x-patient-token": token}) for _ in range(burst)]
    assert [r.status_code for r in answers] == [200] * (burst - proofs) + [429] * proofs
    refused = answers[-1]
    assert assert_problem(refused, 429)["type"].endswith("/rate-limited")
    assert int(refused.headers["retry-after"]) >= 1
    rows = [r for r in trail(paying, a["id"]) if r["client"] == name]
    assert [(r["action"], r["outcome"]) for r in rows] == [("released_reports", "found")] * (burst - proofs)


@pytest.mark.parametrize("kind", ["app", "phone"])
def test_five_wrong_texted_codes_lock_the_app_and_the_phone_line(paying: Gateway, kind: str) -> None:
    person = register_patient(paying.his, name="王五")
    new_visit(paying, person)
    _, device = own_client(paying, kind)
    _, kiosk = own_client(paying, "kiosk")
    with device, kiosk:
        code = one_time_code(paying, device, person["id_number"], person["id"])
        wrong = {"id_number": person["id_number"], "otp": f"{(int(code) + 1) % 1_000_000:06d}"}
        for _ in range(5):
            refused = device.post("/v1/patient-sessions", json=wrong)
            assert assert_problem(refused, 403)["type"].endswith("/patient-proof-refused")
        right = device.post("/v1/patient-sessions", json=wrong | {"otp": code})
        assert assert_problem(right, 403)["type"].endswith("/patient-proof-refused")
        # The patient is locked on every device: a kiosk with the right slip and birth date too.
        slip = {"slip_code": new_slip(paying, person["id"]), "birth_date": person["birth_date"]}
        assert assert_problem(kiosk.post("/v1/patient-sessions", json=slip), 403)["type"].endswith(
            "/patient-proof-refused"
        )
    attempts = ok(paying.admin.get("/v1/audit/session-attempts", params={"patient_id": person["id"]}))
    assert [a["outcome"] for a in reversed(attempts)] == ["sent"] + ["wrong-factor"] * 5 + ["locked"] * 2
