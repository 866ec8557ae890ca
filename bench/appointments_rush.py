"""The 8:00 rush: many clients racing for one popular expert session the moment its booking opens.

A renowned expert's session with fewer seats than callers opens for booking a few seconds after the
start; `--clients` booking clients (call-centre agents and the hall's desks, each with its own patient
and `Idempotency-Key`) wait for that instant and all send their booking at once through the gateway.
Each client books once; a 409 (`session-full`) is a clear "no". Afterwards the session is read back:
every slot holds at most its capacity, no patient twice, and the seats sold equal the 201s.

    python -m bench.appointments_rush --clients 200 --quota 60
    python -m bench.appointments_rush --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import uvloop

from bench.common import (
    RunningSystem,
    machine,
    markdown_table,
    running_system,
    summary,
    write_results,
)

OPENS_IN_SECONDS = 3.0  # booking opens this long after the setup is done: "8:00"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Api:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, keys: dict[str, str]) -> None:
        self.session, self.base_url = session, base_url
        self.auth = {client: {"authorization": f"Bearer {key}"} for client, key in keys.items()}

    async def call(
        self, client: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base_url + path, json=body, headers=self.auth[client] | (headers or {})
        ) as response:
            payload = await response.read()
        return response.status, json.loads(payload) if payload else None

    async def ok(self, client: str, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.call(client, method, path, body)
        if status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer

    async def read_back(self, path: str) -> Any:
        """A GET after the rush: the gateway's breaker may have opened on the slow calls; wait it out."""
        for _ in range(60):
            status, answer = await self.call("his-dev", "GET", path)
            if status == 200:
                return answer
            await asyncio.sleep(0.5)
        raise RuntimeError(f"GET {path}: {status} {answer}")


async def popular_session(api: Api, *, quota: int, opens_at: datetime) -> dict[str, Any]:
    """A renowned expert's full-day session tomorrow, its booking opening at `opens_at`."""
    code = f"rush-{uuid.uuid4().hex[:6]}"
    await api.ok(
        "admin-dev", "POST", "/v1/departments", {"code": code, "name": "心内科专家门诊", "floor": "3F"}
    )
    doctor = {"name": "张教授", "title": "chief", "expert": True, "profile": "冠心病介入", "department": code}
    doctor_id = (await api.ok("admin-dev", "POST", "/v1/doctors", doctor))["id"]
    starts_at = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    body = {
        "department": code,
        "doctor_id": doctor_id,
        "date": starts_at.date().isoformat(),
        "period": "full_day",
        "kind": "expert",
        "starts_at": starts_at.isoformat(),
        "ends_at": (starts_at + timedelta(hours=8)).isoformat(),
        "quota": quota,
        "slot_minutes": 15,
        "booking_opens_at": opens_at.isoformat(),
    }
    session: dict[str, Any] = await api.ok("his-dev", "POST", "/v1/clinic-sessions", body)
    return session


async def rush(system: RunningSystem, clients: int, quota: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=clients + 8)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        api = Api(http, system.url("gateway"), system.api_keys)
        log(f"registering {clients} patients …")
        patients = [
            (await api.ok("nurse-dev", "POST", "/v1/patients", {"unidentified": True}))["id"]
            for _ in range(clients)
        ]
        opens_at = datetime.now(UTC) + timedelta(seconds=OPENS_IN_SECONDS)
        session = await popular_session(api, quota=quota, opens_at=opens_at)
        agents = ["his-dev", "nurse-dev", "admin-dev"]  # call-centre, desk, back office: three keys' limits
        latencies: list[tuple[int, float, str]] = []

        async def book(index: int, patient_id: str, release: asyncio.Event) -> None:
            body = {"clinic_session_id": session["id"], "patient_id": patient_id, "channel": "phone"}
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            await release.wait()
            started = time.perf_counter()
            status, answer = await api.call(
                agents[index % len(agents)], "POST", "/v1/appointments", body, headers
            )
            slug = str(answer.get("type", "")).rsplit("/", 1)[-1] if status != 201 and answer else ""
            latencies.append((status, time.perf_counter() - started, slug))

        release = asyncio.Event()
        tasks = [asyncio.create_task(book(i, p, release)) for i, p in enumerate(patients)]
        await asyncio.sleep(max(0.0, (opens_at - datetime.now(UTC)).total_seconds()))
        log(f"8:00 — releasing {clients} bookings at once")
        started = time.perf_counter()
        release.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        log(f"answers: {Counter((status, slug) for status, _, slug in latencies)}")
        log(f"latency: {summary([s for _, s, _ in latencies])} in {elapsed:.2f} s")

        slots = await api.read_back(f"/v1/clinic-sessions/{session['id']}/slots")
        booked = await api.read_back(f"/v1/appointments?clinic_session_id={session['id']}&limit=100")
    per_slot = Counter(a["slot_starts_at"] for a in booked if a["status"] == "booked")
    capacity = {slot["starts_at"]: slot["capacity"] for slot in slots["slots"]}
    overbooked = {at: n for at, n in per_slot.items() if n > capacity.get(at, 0)}
    statuses = Counter(status for status, _, _ in latencies)
    refusals = Counter(slug for status, _, slug in latencies if status != 201)
    # Everyone was released at once, so the slowest 201 is when the session sold out.
    sold_out = max((s for status, s, _ in latencies if status == 201), default=elapsed)
    return {
        "clients": clients,
        "quota": quota,
        "seconds": round(elapsed, 3),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "refusals": dict(refusals),
        "answers_per_s": round(len(latencies) / elapsed, 1),
        "sold_out_s": round(sold_out, 3),
        "bookings_per_s": round(statuses[201] / sold_out, 1),
        "all": summary([s for _, s, _ in latencies]),
        "booked_201": summary([s for status, s, _ in latencies if status == 201]),
        "verified": {
            "appointments": len(booked),
            "distinct_patients": len({a["patient_id"] for a in booked}),
            "free_after": slots["free"],
            "overbooked_slots": len(overbooked),
            "sold_equals_201s": len(booked) == statuses[201],
        },
    }


def report(result: dict[str, Any], database: str) -> str:
    verified = result["verified"]
    return "\n".join(
        [
            f"## The 8:00 rush ({database}: {result['clients']} clients, one expert session of "
            f"{result['quota']} seats)",
            "",
            markdown_table(
                [
                    "answers",
                    "201",
                    "409",
                    "sold out after s",
                    "bookings/s",
                    "answers/s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "overbooked slots",
                    "patients twice",
                ],
                [
                    [
                        result["all"]["count"],
                        result["statuses"].get("201", 0),
                        result["statuses"].get("409", 0),
                        result["sold_out_s"],
                        result["bookings_per_s"],
                        result["answers_per_s"],
                        result["all"]["p50_ms"],
                        result["all"]["p99_ms"],
                        result["all"]["max_ms"],
                        verified["overbooked_slots"],
                        verified["appointments"] - verified["distinct_patients"],
                    ]
                ],
            ),
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.appointments_rush", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=200, help="booking clients released at once")
    parser.add_argument("--quota", type=int, default=60, help="seats of the expert session")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite files in a temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quota > 100:
        raise SystemExit("--quota at most 100: the bookings are read back in one page")
    run_tag = uuid.uuid4().hex[:8]
    log("starting the system …")
    with running_system(args.database_url, run_tag) as system:
        result = uvloop.run(rush(system, args.clients, args.quota))
    database = "postgresql" if args.database_url else "sqlite"
    print(report(result, database))
    path = write_results(
        "appointments_rush", {"args": vars(args), "database": database, "machine": machine(), "rush": result}
    )
    log(f"\nwrote {path}")
    verified = result["verified"]
    sound = verified["overbooked_slots"] == 0 and verified["sold_equals_201s"]
    sound = sound and verified["appointments"] == verified["distinct_patients"]
    return 0 if sound and result["statuses"].get("201") == min(args.quota, args.clients) else 1


if __name__ == "__main__":
    sys.exit(main())
