"""`GroupRunner`: concurrent items share calls, results go back to the right caller, and one
call's failure reaches each of its callers without stopping later groups."""

import asyncio
import threading

import pytest

from app.core.batching import GroupRunner, in_thread


async def test_concurrent_items_share_calls_and_get_their_own_results() -> None:
    calls: list[list[int]] = []
    release = threading.Event()

    def square(items: list[int]) -> list[int | Exception]:
        calls.append(items)
        release.wait(5)
        return [ValueError(f"odd {item}") if item % 2 else item * item for item in items]

    runner: GroupRunner[int, int] = GroupRunner(in_thread(square), max_group=50, parallel=1)
    tasks = [asyncio.ensure_future(runner.run(0))]
    await asyncio.sleep(0.05)  # the first item's call is running...
    tasks += [asyncio.ensure_future(runner.run(item)) for item in range(1, 10)]
    await asyncio.sleep(0.05)  # ...while the other nine wait for it
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [len(items) for items in calls] == [1, 9]
    for item, result in enumerate(results):
        if item % 2:
            assert isinstance(result, ValueError)
            assert str(result) == f"odd {item}"
        else:
            assert result == item * item


async def test_a_failed_call_fails_its_group_only() -> None:
    def flaky(items: list[str]) -> list[str | Exception]:
        if "boom" in items:
            raise RuntimeError("database went away")
        return [item.upper() for item in items]

    runner: GroupRunner[str, str] = GroupRunner(in_thread(flaky), parallel=1)
    with pytest.raises(RuntimeError, match="database went away"):
        await runner.run("boom")
    assert await runner.run("fine") == "FINE"


async def test_groups_are_capped_and_run_in_parallel_slots() -> None:
    sizes: list[int] = []
    running = 0
    most_at_once = 0
    lock = threading.Lock()

    def record(items: list[int]) -> list[int | Exception]:
        nonlocal running, most_at_once
        with lock:
            running += 1
            most_at_once = max(most_at_once, running)
            sizes.append(len(items))
        threading.Event().wait(0.05)
        with lock:
            running -= 1
        return list(items)

    runner: GroupRunner[int, int] = GroupRunner(in_thread(record), max_group=4, parallel=2)
    assert await asyncio.gather(*(runner.run(item) for item in range(20))) == list(range(20))
    assert max(sizes) <= 4
    assert sum(sizes) == 20
    assert most_at_once == 2


async def _group_sizes(linger: float) -> list[int]:
    """The groups of five items handed over 20 ms apart to a runner with this linger."""
    sizes: list[int] = []

    async def record(items: list[int]) -> list[int | Exception]:
        sizes.append(len(items))
        return list(items)

    runner: GroupRunner[int, int] = GroupRunner(record, parallel=1, linger=linger)
    tasks = []
    for item in range(5):
        tasks.append(asyncio.ensure_future(runner.run(item)))
        await asyncio.sleep(0.02)
    assert await asyncio.gather(*tasks) == list(range(5))
    return sizes


async def test_a_lingering_runner_groups_items_that_arrive_apart() -> None:
    assert await _group_sizes(0.0) == [1, 1, 1, 1, 1]
    assert await _group_sizes(0.5) == [5]
