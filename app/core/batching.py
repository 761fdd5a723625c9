"""Group commit: many concurrent requests served by one call in a worker thread.

A request that needs the database awaits `GroupRunner.run(item)`. While one group's call runs
in a thread, the items that arrive meanwhile wait and form the next group, so under load one
transaction (one connection checkout, one commit, one broker publish) serves many requests,
and with a single request in flight nothing waits for a timer.

How a group's call is run can be wrapped (`execute`), e.g. to retry it through a database outage.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# What a group call returns for each item, in order: its result, or the error to raise.
GroupCall = Callable[[list[ItemT]], Sequence[ResultT | Exception]]
# Runs a group call off the event loop and returns what it returned.
GroupExecutor = Callable[
    [GroupCall[ItemT, ResultT], list[ItemT]], Awaitable[Sequence[ResultT | Exception]]
]


async def in_thread(
    call: GroupCall[ItemT, ResultT], items: list[ItemT]
) -> Sequence[ResultT | Exception]:
    return await asyncio.to_thread(call, items)


class GroupRunner(Generic[ItemT, ResultT]):
    """Runs `call` on groups of items in a worker thread, at most `parallel` groups at once."""

    def __init__(
        self,
        call: GroupCall[ItemT, ResultT],
        *,
        max_group: int = 200,
        parallel: int = 2,
        execute: GroupExecutor[ItemT, ResultT] = in_thread,
    ) -> None:
        self._call = call
        self._execute = execute
        self._max_group = max_group
        self._slots = parallel
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
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                await self._serve(group)
        finally:
            self._slots += 1

    async def _serve(self, group: list[tuple[ItemT, "asyncio.Future[ResultT]"]]) -> None:
        outcomes: Sequence[ResultT | Exception]
        try:
            outcomes = await self._execute(self._call, [item for item, _ in group])
        except Exception as error:  # noqa: BLE001 - the group's callers each get the error
            outcomes = [error] * len(group)
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if future.done():  # the caller went away (client disconnected)
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
