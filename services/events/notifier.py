"""Wakes log readers (SSE streams, the webhook and NATS workers) as soon as the ingestor commits.

Readers remember the version they last saw, read the database, then wait for a newer version; so a
commit between their read and their wait is never missed, and an idle reader never polls the database.
"""

from kit.wakeups import Wakeup


class LogNotifier(Wakeup):
    """Bumped by the ingestor thread once a batch is logged; awaited by threads and by asyncio tasks.

    `deliveries` is bumped only when a batch owed webhook deliveries (or a replay re-owed some): most
    commits owe none, and the webhook worker need not read its tables for them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.deliveries = Wakeup()

    def close(self) -> None:
        self.deliveries.close()
        super().close()
