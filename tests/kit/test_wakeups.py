"""`Wakeup` with tags: a reader of some tags is woken by a bump of those, or of unknown tags, only."""

import asyncio

from kit.wakeups import KEPT_BUMPS, Wakeup


def test_a_reader_of_some_tags_sleeps_through_bumps_of_others() -> None:
    async def scenario() -> list[bool]:
        wakeup = Wakeup()
        seen = wakeup.version
        waiting = asyncio.create_task(wakeup.wait_async(seen, timeout=30, wanted={"x"}))
        while not wakeup.waiting:
            await asyncio.sleep(0)
        wakeup.bump({"y"})
        wakeup.bump({"y", "z"})
        for _ in range(5):
            await asyncio.sleep(0)
        asleep = not waiting.done()
        wakeup.bump({"y", "x"})
        return [asleep, await waiting]

    assert asyncio.run(scenario()) == [True, True]


def test_bumps_that_do_not_say_what_changed_concern_every_reader() -> None:
    wakeup = Wakeup()
    wakeup.bump()
    assert wakeup.changed_since(0, {"x"})
    assert asyncio.run(wakeup.wait_async(0, timeout=30, wanted={"x"}))


def test_a_reader_asking_after_the_bumps_is_told_only_of_those_it_reads() -> None:
    wakeup = Wakeup()
    wakeup.bump({"y"})
    assert not wakeup.changed_since(0, {"x"})
    assert not asyncio.run(wakeup.wait_async(0, timeout=0.01, wanted={"x"}))
    assert wakeup.changed_since(0, None) and wakeup.changed_since(0, {"y"})
    wakeup.bump({"x"})
    assert wakeup.changed_since(0, {"x"}) and not wakeup.changed_since(2, {"x"})


def test_a_reader_further_behind_than_the_kept_bumps_reads_again() -> None:
    wakeup = Wakeup()
    for _ in range(KEPT_BUMPS + 1):
        wakeup.bump({"y"})
    assert wakeup.changed_since(0, {"x"})  # the first bump's tags are forgotten: it may have been an x
    assert not wakeup.changed_since(1, {"x"})
