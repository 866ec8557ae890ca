"""A minimal Server-Sent Events reader for tests (the parts of the format the hub uses)."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One dispatched message, or a comment line (`comment` set, the rest empty)."""

    id: str | None = None
    event: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


def sse_messages(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Messages from the lines of an event stream (`httpx.Response.iter_lines()`)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseMessage(id=fields.get("id"), event=fields.get("event"), data="\n".join(data))
            fields, data = {}, []
        elif line.startswith(":"):
            yield SseMessage(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


def take_events(lines: Iterable[str], count: int) -> list[SseMessage]:
    """The next `count` event messages (comments skipped)."""
    taken: list[SseMessage] = []
    for message in sse_messages(lines):
        if message.comment is None:
            taken.append(message)
            if len(taken) == count:
                break
    return taken
