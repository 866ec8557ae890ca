"""Writers racing a reader: the shape of every "a reader paging the feed never misses a commit" test."""

import threading
from collections.abc import Callable


def writers_race_a_reader(
    *, reader: Callable[[], None], writer: Callable[[int], None], writers: int, done: threading.Event
) -> None:
    """Start `reader`, then `writers` threads each running `writer(n)`; once they all finished, set `done`
    (the reader's cue to drain what is left and return) and wait for the reader."""
    follower = threading.Thread(target=reader)
    follower.start()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    follower.join()
