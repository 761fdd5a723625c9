"""Daily and monthly USD budgets per owner, checked in the transaction that accepts its jobs.

**Cost.** A job costs GPU_PRICE_PER_SECOND times its execution time at RunPod. What an owner
has spent in a period (a UTC day, a calendar month in UTC) is the cost of its jobs created in
that period: the measured cost of the finished ones (nothing for one that never ran) plus an
estimate for each unfinished one. A job's estimate is the price times the median execution
time of its route's recent jobs (the slowest endpoint's, `app.scheduler.capacity`), or
JOB_ESTIMATE_SECONDS while the route has none.

**The check.** A request whose estimate does not fit in what remains of a budget is refused
with 402 `budget_exceeded`, which says when the budget resets (and `Retry-After`). It runs in
the transaction that records the jobs (`app.jobs.admission`), after the owner's period rows
(`budget_periods`) are locked: a row lock on PostgreSQL, the write lock on SQLite. So
concurrent submissions, from any number of API processes, are decided one after another, each
counting the jobs the ones before it recorded, and the estimates accepted never exceed the
budget. What the jobs then really cost differs from their estimates by what their executions
differ from the median.

**Thresholds.** When an owner's spend (with the new estimates) reaches 80 % of a budget, and
again at 100 % (or when a request is refused for it), a `budget.threshold` webhook is queued
once per period to the caller's account webhook URL (its key's `webhook_url`, else
BUDGET_WEBHOOK_URL).
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from app.accounts.callers import Caller
from app.accounts.models import BudgetPeriod
from app.core.config import Settings
from app.core.db import database_now, upsert, utcnow
from app.core.errors import PaymentRequired
from app.jobs.models import Job
from app.jobs.status import ACTIVE
from app.notify.deliveries import queue_account_event
from app.scheduler.capacity import endpoint_states

THRESHOLDS = (80, 100)
BUDGET_THRESHOLD = "budget.threshold"
_ACTIVE = [status.value for status in ACTIVE]


@dataclass(frozen=True)
class Period:
    name: str  # "daily" or "monthly"
    key: str  # the row's period: "2026-12-05", "2026-12"
    starts_at: datetime
    resets_at: datetime


def periods_at(now: datetime) -> tuple[Period, Period]:
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return (
        Period("daily", day.date().isoformat(), day, day + timedelta(days=1)),
        Period("monthly", month.strftime("%Y-%m"), month, next_month),
    )


def budget_of(caller: Caller, period: Period) -> float | None:
    return caller.daily_budget_usd if period.name == "daily" else caller.monthly_budget_usd


def job_estimate_usd(session: Session, settings: Settings, route: str) -> float:
    medians = [s.execution_p50_ms for s in endpoint_states(session, route) if s.execution_p50_ms]
    seconds = max(medians) / 1000 if medians else settings.job_estimate_seconds
    return seconds * settings.price_of(route)


def spent_usd(
    session: Session, settings: Settings, owners: Iterable[str], periods: tuple[Period, Period]
) -> dict[tuple[str, str], float]:
    """What each owner has spent in each period, by (owner, period name) (see the module)."""
    day, month = periods
    active = Job.status.in_(_ACTIVE)
    today = Job.created_at >= day.starts_at
    rows = session.execute(
        select(
            Job.owner,
            Job.route,
            func.sum(case((~active & today, Job.execution_ms), else_=0)),
            func.sum(case((~active, Job.execution_ms), else_=0)),
            func.sum(case((active & today, 1), else_=0)),
            func.sum(case((active, 1), else_=0)),
        )
        .where(Job.owner.in_(set(owners)), Job.created_at >= month.starts_at)
        .group_by(Job.owner, Job.route)
    ).all()
    spent: dict[tuple[str, str], float] = defaultdict(float)
    estimates: dict[str, float] = {}
    for owner, route, day_ms, month_ms, day_active, month_active in rows:
        if route not in estimates:
            estimates[route] = job_estimate_usd(session, settings, route)
        estimate, price = estimates[route], settings.price_of(route)
        spent[owner, day.name] += (day_ms or 0) / 1000 * price + (day_active or 0) * estimate
        spent[owner, month.name] += (month_ms or 0) / 1000 * price + (month_active or 0) * estimate
    return spent


@dataclass(frozen=True)
class BudgetState:
    period: str
    budget_usd: float
    spent_usd: float
    remaining_usd: float
    resets_at: datetime


def budget_states(session: Session, settings: Settings, caller: Caller) -> list[BudgetState]:
    """The caller's budgets: what is spent (or reserved by unfinished jobs) and what remains."""
    periods = periods_at(database_now(session))
    spent = spent_usd(session, settings, [caller.owner], periods)
    states = []
    for period in periods:
        budget = budget_of(caller, period)
        if budget is not None:
            used = spent[caller.owner, period.name]
            states.append(
                BudgetState(
                    period=period.name,
                    budget_usd=budget,
                    spent_usd=round(used, 6),
                    remaining_usd=round(max(0.0, budget - used), 6),
                    resets_at=period.resets_at,
                )
            )
    return states


def _usd(amount: float) -> str:
    return "$" + f"{amount:.6f}".rstrip("0").rstrip(".")


class BudgetCheck:
    """The budgets of one admission transaction: lock, charge each request, then notify."""

    def __init__(self, session: Session, settings: Settings, callers: Iterable[Caller]) -> None:
        self._session = session
        self._settings = settings
        self._callers = {caller.owner: caller for caller in callers if caller.budgeted}
        self._spent: dict[tuple[str, str], float] = {}
        self._notified: dict[tuple[str, str], int] = {}
        self._refused: set[tuple[str, str]] = set()
        self._estimates: dict[str, float] = {}
        if not self._callers:
            self.periods = periods_at(utcnow())
            return
        self.periods = periods_at(database_now(session))
        self._notified = self._lock(sorted(self._callers))
        self._spent = spent_usd(session, settings, self._callers, self.periods)

    def _lock(self, owners: list[str]) -> dict[tuple[str, str], int]:
        """Lock each owner's period rows (made when missing), in one order for every process."""
        insert = upsert(self._session)(BudgetPeriod).values(
            [{"owner": owner, "period": period.key} for owner in owners for period in self.periods]
        )
        rows = self._session.execute(
            insert.on_conflict_do_update(
                index_elements=[BudgetPeriod.owner, BudgetPeriod.period],
                set_={"owner": insert.excluded.owner},
            ).returning(BudgetPeriod.owner, BudgetPeriod.period, BudgetPeriod.notified_percent)
        ).all()
        names = {period.key: period.name for period in self.periods}
        return {(owner, names[key]): notified for owner, key, notified in rows}

    def charge(self, caller: Caller, route: str, jobs: int) -> None:
        """Count the request's estimate against the caller's budgets, or refuse it (402)."""
        if not caller.budgeted:
            return
        if route not in self._estimates:
            self._estimates[route] = job_estimate_usd(self._session, self._settings, route)
        cost = self._estimates[route] * jobs
        over = [
            period
            for period in self.periods
            if (budget := budget_of(caller, period)) is not None
            and self._spent[caller.owner, period.name] + cost > budget + 1e-9
        ]
        if over:
            binding = over[-1]  # the monthly budget, when both are spent: it resets later
            for period in over:
                self._refused.add((caller.owner, period.name))
            raise self._refusal(caller, binding, cost)
        for period in self.periods:
            self._spent[caller.owner, period.name] += cost

    def refund(self, caller: Caller, route: str, jobs: int) -> None:
        """Take back what `charge` counted for a request refused after it (`queue_full`)."""
        if caller.budgeted:
            for period in self.periods:
                self._spent[caller.owner, period.name] -= self._estimates[route] * jobs

    def _refusal(self, caller: Caller, period: Period, cost: float) -> PaymentRequired:
        budget = budget_of(caller, period)
        spent = self._spent[caller.owner, period.name]
        resets_at = period.resets_at
        left = max(1.0, (resets_at - database_now(self._session)).total_seconds())
        return PaymentRequired(
            f"the {period.name} budget of {_usd(budget or 0.0)} does not cover this request: "
            f"{_usd(spent)} spent or reserved, this request's estimate {_usd(cost)}; it resets "
            f"at {resets_at.isoformat().replace('+00:00', 'Z')}",
            retry_after=round(left),
        )

    def notify(self) -> None:
        """Record the thresholds reached, and queue their webhooks."""
        for owner, caller in self._callers.items():
            for period in self.periods:
                budget = budget_of(caller, period)
                if budget is None:
                    continue
                account = (owner, period.name)
                spent = self._spent[account]
                reached = max(
                    [t for t in THRESHOLDS if spent >= budget * t / 100 - 1e-9]
                    + [100 if account in self._refused else 0]
                )
                notified = self._notified.get(account, 0)
                if reached <= notified:
                    continue
                self._session.execute(
                    update(BudgetPeriod)
                    .where(BudgetPeriod.owner == owner, BudgetPeriod.period == period.key)
                    .values(notified_percent=reached)
                )
                if caller.webhook_url:
                    for threshold in (t for t in THRESHOLDS if notified < t <= reached):
                        self._queue(caller, period, threshold, budget, spent)

    def _queue(
        self, caller: Caller, period: Period, threshold: int, budget: float, spent: float
    ) -> None:
        assert caller.webhook_url is not None
        queue_account_event(
            self._session,
            owner=caller.owner,
            url=caller.webhook_url,
            event=BUDGET_THRESHOLD,
            data={
                "owner": caller.owner,
                "period": period.name,
                "threshold_percent": threshold,
                "budget_usd": budget,
                "spent_usd": round(spent, 6),
                "resets_at": period.resets_at.isoformat(),
            },
        )
