"""`LatencySizedSlots`: the bound follows the time calls hold their slots, stays between its
floor and ceiling, and a waiter cancelled after its wake-up hands the slot on."""

import asyncio

from app.core.slots import LatencySizedSlots


async def _hold(slots: LatencySizedSlots, seconds: float, peak: list[int]) -> None:
    async with slots:
        peak.append(slots.busy)
        await asyncio.sleep(seconds)


async def test_fast_calls_keep_the_floor_and_slow_ones_grow_to_the_ceiling() -> None:
    slots = LatencySizedSlots(rate=200.0, floor=2, ceiling=12)
    peak: list[int] = []
    await asyncio.gather(*(_hold(slots, 0.001, peak) for _ in range(40)))
    assert slots.limit == 2
    assert max(peak) == 2

    for _ in range(4):  # 0.05 s calls at 200/s need 10 at once; with headroom, the ceiling
        peak.clear()
        await asyncio.gather(*(_hold(slots, 0.05, peak) for _ in range(40)))
    assert slots.limit == 12
    assert max(peak) == 12
    assert slots.busy == 0


async def test_a_waiter_cancelled_after_its_wake_up_hands_the_slot_on() -> None:
    slots = LatencySizedSlots(rate=1.0, floor=1, ceiling=1)
    peak: list[int] = []
    await slots.__aenter__()
    cancelled = asyncio.ensure_future(_hold(slots, 0.0, peak))
    waiting = asyncio.ensure_future(_hold(slots, 0.0, peak))
    await asyncio.sleep(0.01)  # both wait for the one slot
    await slots.__aexit__(None, None, None)  # wakes the first waiter...
    cancelled.cancel()  # ...which is cancelled before it could take the slot
    await asyncio.wait_for(waiting, timeout=2)
    assert cancelled.cancelled()
    assert peak == [1]
    assert slots.busy == 0
