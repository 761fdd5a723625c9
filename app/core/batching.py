"""Group commit: many concurrent requests served by one call.

A request that needs the database (or Redis) awaits `GroupRunner.run(item)`. While one group's
call runs, the items that arrive meanwhile wait and form the next group, so under load one
transaction (one connection checkout, one commit, one broker publish) or one Redis round trip
serves many requests, and with a single request in flight nothing waits for a timer, unless the
runner lingers: a group whose latency matters little (a hand-over to the workers) may wait a
moment for company, so that one message stands for many.

The group call is a coroutine function; `in_thread` makes one of a blocking function (the
synchronous session), and a wrapper can add what its callers need, e.g. retrying a write through
a database outage.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# What a group call returns for each item, in order: its result, or the error to raise.
BlockingGroupCall = Callable[[list[ItemT]], Sequence[ResultT | Exception]]
GroupCall = Callable[[list[ItemT]], Awaitable[Sequence[ResultT | Exception]]]


def in_thread(call: BlockingGroupCall[ItemT, ResultT]) -> GroupCall[ItemT, ResultT]:
    """The group call that runs the blocking `call` in a worker thread."""

    async def threaded(items: list[ItemT]) -> Sequence[ResultT | Exception]:
        return await asyncio.to_thread(call, items)

    return threaded


class GroupRunner(Generic[ItemT, ResultT]):
    """Runs `call` on groups of items, at most `parallel` groups at once, each starting
    `linger` seconds after its first item arrived."""

    def __init__(
        self,
        call: GroupCall[ItemT, ResultT],
        *,
        max_group: int = 200,
        parallel: int = 2,
        linger: float = 0.0,
    ) -> None:
        self._call = call
        self._max_group = max_group
        self._slots = parallel
        self._linger = linger
        self._waiting: list[tuple[ItemT, asyncio.Future[ResultT]]] = []

    async def run(self, item: ItemT) -> ResultT:
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._slots > 0:
            self._slots -= 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if self._linger:
                    await asyncio.sleep(self._linger)
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                await self._serve(group)
        finally:
            self._slots += 1

    async def _serve(self, group: list[tuple[ItemT, "asyncio.Future[ResultT]"]]) -> None:
        outcomes: Sequence[ResultT | Exception]
        try:
            outcomes = await self._call([item for item, _ in group])
        except Exception as error:  # noqa: BLE001 - the group's callers each get the error
            outcomes = [error] * len(group)
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if future.done():  # the caller went away (client disconnected)
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
