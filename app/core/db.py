"""Database plumbing: the declarative base, engines and sessions (SQLite or PostgreSQL)."""

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy
from sqlalchemy import DateTime, Engine, MetaData, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:  # the worker, which has no greenlet, never opens an asyncio session
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

P = ParamSpec("P")
T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


_NOW = "podrelay.database_now"


def database_now(session: Session) -> datetime:
    """The time by which leases are taken and checked: on PostgreSQL the server's clock, the
    same for every process whatever their own clocks say (a worker a minute ahead would see
    every lease as expired); on SQLite, a file on one machine, this machine's."""
    if session.get_bind().dialect.name != "postgresql":
        return utcnow()
    # PostgreSQL's now() is the transaction's start: asked once per transaction.
    transaction = session.get_transaction()
    cached = session.info.get(_NOW)
    if cached is not None and transaction is not None and cached[0] is transaction:
        known: datetime = cached[1]
        return known
    now: datetime = session.execute(select(func.now())).scalar_one().astimezone(UTC)
    session.info[_NOW] = (session.get_transaction(), now)
    return now


def upsert(session: Session) -> Callable[[type[Base]], postgresql.Insert | sqlite.Insert]:
    """`INSERT ... ON CONFLICT DO UPDATE`, which both backends spell the same way."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for `postgresql://` URLs, which otherwise default to psycopg2."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so processes can share it."""
    url = normalize_database_url(url)
    parsed = make_url(url)
    # `sqlalchemy.create_engine` is looked up at each call: tracing (`app.core.tracing`) wraps it.
    if parsed.get_backend_name() != "sqlite":
        return sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """One engine and session factory per process (rebuilt after a fork)."""

    def __init__(self, url: str) -> None:
        self.url = normalize_database_url(url)
        self.engine = make_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._async_sessions: async_sessionmaker[AsyncSession] | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block succeeds, rolls back when it raises."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    async def run(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(session, ...)` as one unit of work (see `session`), from an event loop.

        On PostgreSQL it runs on the loop itself, through SQLAlchemy's asyncio engine (psycopg's
        async mode): a round trip never waits for a thread to get the GIL back from a busy
        loop, which is most of what a transaction costs a busy API. On SQLite, in a thread.
        """
        if self.engine.dialect.name != "postgresql":
            return await asyncio.to_thread(partial(self._run_in_session, work, *args, **kwargs))
        if self._async_sessions is None:
            self._async_sessions = _async_sessions(self.url)
        async with self._async_sessions() as session:
            try:
                result = await session.run_sync(work, *args, **kwargs)
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
        return result

    async def run_in_thread(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run`, always in a thread: for work that also does blocking I/O besides the
        database's (writing images to the media store), which must not stall the loop."""
        return await asyncio.to_thread(partial(self._run_in_session, work, *args, **kwargs))

    def _run_in_session(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self.session() as session:
            return work(session, *args, **kwargs)

    def dispose(self) -> None:
        self.engine.dispose()

    async def adispose(self) -> None:
        """`dispose`, and the asyncio engine's connections too."""
        if self._async_sessions is not None:
            await self._async_sessions.kw["bind"].dispose()
            self._async_sessions = None
        self.dispose()


def _async_sessions(url: str) -> "async_sessionmaker[AsyncSession]":
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    engine = create_async_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
    return async_sessionmaker(engine, expire_on_commit=False)
