"""NATS JetStream fan-out, against the real server at 127.0.0.1:4222 (fails if it is not running)."""

import asyncio
import json
import socket
import uuid
from typing import Any

import nats

from kit.database import Database
from kit.testing import FakeFeed, eventually
from services.events.models import PublisherCursor
from tests.events.conftest import HubStarter
from tests.events.factories import logged_ids, publish, read_log, source_event

NATS_URL = "nats://127.0.0.1:4222"


def nats_running() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
        return True
    except OSError:
        return False


async def consume(stream: str, subjects: str, expected: int) -> list[dict[str, Any]]:
    """Every message on the stream, read by an ephemeral pull consumer (a few extra polls catch repeats)."""
    client = await nats.connect(NATS_URL)
    try:
        js = client.jetstream()
        consumer = await js.pull_subscribe(subjects, durable=None, stream=stream)
        messages: list[dict[str, Any]] = []
        for _ in range(50):
            try:
                batch = await consumer.fetch(100, timeout=0.2)
            # No message yet: nats' TimeoutError, or asyncio's when the pull's deadline ran out first.
            except TimeoutError:
                if len(messages) >= expected:
                    break
                continue
            for message in batch:
                headers = message.headers or {}
                messages.append({"subject": message.subject, "msg_id": headers.get("Nats-Msg-Id"),
                                 "event": json.loads(message.data)})  # fmt: skip
                await message.ack()
        return messages
    finally:
        await client.close()


async def drop_stream(stream: str) -> None:
    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await client.close()


def published_upto(database: Database) -> int:
    with database.session(write=False) as session:
        cursor = session.get(PublisherCursor, "nats")
        return cursor.position if cursor else 0


def wait_until_published(database: Database, position: int) -> None:
    eventually(lambda: published_upto(database) == position, what="JetStream to acknowledge every event")


def test_each_log_event_reaches_jetstream_once_even_when_published_again(
    start_hub: HubStarter, feeds: dict[str, FakeFeed], database: Database
) -> None:
    assert nats_running(), f"no NATS server reachable at {NATS_URL}: start it (these tests need it)"
    stream, prefix = f"PF_TEST_{uuid.uuid4().hex[:8].upper()}", f"pftest{uuid.uuid4().hex[:8]}.events"
    settings = {"nats_url": NATS_URL, "nats_stream": stream, "nats_subject_prefix": prefix}
    opened = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))
    after = {"registration": opened["position"]}
    charged = publish(
        feeds, "billing", source_event("charge.posted", visit_id="v1", patient_id="p1", causes=after)
    )
    try:
        # The second hub starts from empty tables: it logs and publishes both events all over again.
        for _run in range(2):
            with start_hub(**settings) as hub:
                logged_ids(hub, 2)
                wait_until_published(database, read_log(hub)[-1]["position"])
        messages = asyncio.run(consume(stream, f"{prefix}.>", 2))
    finally:
        asyncio.run(drop_stream(stream))
    assert [m["event"]["id"] for m in messages] == [opened["id"], charged["id"]]
    assert [m["msg_id"] for m in messages] == [opened["id"], charged["id"]]
    assert [m["subject"] for m in messages] == [f"{prefix}.visit.opened", f"{prefix}.charge.posted"]
    assert messages[0]["event"]["patient_id"] == "p1" and messages[1]["event"]["visit_sequence"] == 2
