"""Recording a group of new jobs on PostgreSQL with one statement, from the event loop.

The API's busiest write. `service.insert_jobs` (the synchronous session, in a worker thread)
costs a BEGIN, two INSERTs, a COMMIT and a GIL hand-back after each of these round trips while
the event loop is busy; this is one autocommitted statement on an asyncio connection: the jobs,
their `created` events and the check that each caller's API key is still live, all or nothing.
Timestamps are the database's clock, as leases are (`app.core.db.database_now`).
"""

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json
from sqlalchemy import text

from app.jobs.service import FIRST_CHECK_IN_S
from app.jobs.status import JobStatus

if TYPE_CHECKING:  # the worker, which has no greenlet, imports this module too
    from sqlalchemy.ext.asyncio import AsyncConnection

# Jobs whose key was revoked meanwhile are left out; their ids are missing from the answer.
_RECORD = text(
    """
    WITH new AS (
        SELECT * FROM json_to_recordset(CAST(:jobs AS json)) AS n(
            id varchar, owner varchar, key_id varchar, prompt text, negative_prompt text,
            params json, timeout_s float8, webhook_url text
        )
        WHERE n.key_id IS NULL OR EXISTS (
            SELECT 1 FROM api_keys WHERE api_keys.id = n.key_id AND api_keys.revoked_at IS NULL
        )
    ), recorded AS (
        INSERT INTO jobs (id, owner, prompt, negative_prompt, params, status, attempts, polls,
                          timeout_s, webhook_url, created_at, updated_at, deadline_at,
                          next_poll_at)
        SELECT id, owner, prompt, negative_prompt, params, :status, 0, 0, timeout_s,
               webhook_url, now(), now(), now() + timeout_s * interval '1 second',
               now() + :first_check_in * interval '1 second'
        FROM new
        RETURNING id, created_at, deadline_at
    ), events AS (
        INSERT INTO job_events (job_id, kind, status, at)
        SELECT id, 'created', :status, created_at FROM recorded
    )
    SELECT id, created_at, deadline_at FROM recorded
    """
)


@dataclass(frozen=True, slots=True)
class NewJobRecord:
    """One job to record: what the request asked for, and whose API key it came with."""

    id: str
    owner: str
    key_id: str | None
    prompt: str
    negative_prompt: str | None
    params: dict[str, Any]  # GenerationParams, dumped as JSON
    timeout_s: float
    webhook_url: str | None


_COLUMNS = [field.name for field in fields(NewJobRecord)]


@dataclass(frozen=True, slots=True)
class RecordedTimes:
    created_at: datetime
    deadline_at: datetime


async def record_new_jobs(
    connection: "AsyncConnection", jobs: list[NewJobRecord]
) -> dict[str, RecordedTimes]:
    """Record `jobs` and their first events; returns the recorded ones by id. A job whose API
    key is no longer live is not recorded (and not in the answer)."""
    # One JSON document, not one array per column: psycopg builds array literals in Python
    # (and pydantic-core's encoder is about three times as fast as the json module's here).
    document = to_json([{name: getattr(job, name) for name in _COLUMNS} for job in jobs])
    arguments = {
        "jobs": document.decode(),
        "status": JobStatus.PENDING.value,
        "first_check_in": FIRST_CHECK_IN_S,
    }
    rows = await connection.execute(_RECORD, arguments)
    return {
        job_id: RecordedTimes(created.astimezone(UTC), deadline.astimezone(UTC))
        for job_id, created, deadline in rows
    }
