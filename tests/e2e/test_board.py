"""The waiting-room board (叫号屏) through the real gateway: numbers and masked names, nothing else.

The hall's `board` key sees a queue's board projection only: no patient or visit ids, no full names,
no clinical text, and none of the staff routes that carry them.
"""

from typing import Any

import pytest

from tests.e2e.clients import (
    Gateway,
    assert_problem,
    ok,
    queued_visit,
    unique_department,
)

COMPLAINT = "胸痛30分钟伴大汗"
LEVEL_NOTE = "疑似急性冠脉综合征"


@pytest.fixture(scope="module")
def hall(gateway: Gateway) -> dict[str, Any]:
    """A department with a called patient, a waiting one and a waiting unidentified one."""
    department = unique_department()
    called = queued_visit(gateway, department, name="张小三", complaint=COMPLAINT, note=LEVEL_NOTE)
    waiting = queued_visit(gateway, department, name="欧阳娜娜", complaint=COMPLAINT, note=LEVEL_NOTE)
    unidentified = queued_visit(gateway, department, name=None, complaint=COMPLAINT, note=LEVEL_NOTE)
    ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "3"}))
    return {"department": department, "people": [called, waiting, unidentified]}


def test_the_board_key_cannot_list_a_queue_or_read_assessments(
    gateway: Gateway, hall: dict[str, Any]
) -> None:
    department = hall["department"]
    someone = hall["people"][1]
    assert_problem(gateway.board.get(f"/v1/queues/{department}"), 403)
    assert_problem(gateway.board.get(f"/v1/visits/{someone['visit']['id']}/assessments"), 403)
    assert_problem(gateway.board.get(f"/v1/visits/{someone['visit']['id']}/tickets"), 403)
    assert_problem(gateway.board.get(f"/v1/tickets/{someone['ticket']['id']}"), 403)


def test_the_board_shows_numbers_masked_names_and_counters_only(
    gateway: Gateway, hall: dict[str, Any]
) -> None:
    department = hall["department"]
    response = gateway.board.get(f"/v1/queues/{department}/board")
    board = ok(response)
    called, waiting, unidentified = hall["people"]
    assert board["department"] == department and board["suspended"] is False
    assert board["tickets"] == [
        {
            "display_number": called["ticket"]["display_number"],
            "name": "张*三",
            "status": "called",
            "counter": "3",
        },
        {
            "display_number": waiting["ticket"]["display_number"],
            "name": "欧**娜",
            "status": "waiting",
            "counter": None,
        },
        {
            "display_number": unidentified["ticket"]["display_number"],
            "name": "无名氏",
            "status": "waiting",
            "counter": None,
        },
    ]
    # Nothing that names or identifies a patient, nor any clinical text, anywhere in the raw answer.
    secrets = [COMPLAINT, LEVEL_NOTE, "张小三", "欧阳娜娜", "车祸伤者", "patient_id", "visit_id", "level"]
    for person in hall["people"]:
        secrets += [person["patient"]["id"], person["visit"]["id"], person["ticket"]["id"]]
    leaked = [secret for secret in secrets if secret in response.text]
    assert not leaked, f"the board leaks {leaked}: {response.text}"


def test_staff_keep_the_full_queue_and_only_the_board_scope_opens_the_board(
    gateway: Gateway, hall: dict[str, Any]
) -> None:
    department = hall["department"]
    queue = ok(gateway.nurse.get(f"/v1/queues/{department}"))
    assert [t["visit_id"] for t in queue["waiting"]] == [p["visit"]["id"] for p in hall["people"][1:]]
    assert_problem(gateway.nurse.get(f"/v1/queues/{department}/board"), 403)  # no board:read
    assert_problem(gateway.anonymous.get(f"/v1/queues/{department}/board"), 401)
