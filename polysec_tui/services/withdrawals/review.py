"""The review queue and the officers' decisions on withdrawals.

States: ``pending`` (not held: unscreened, or screened below the threshold), ``held``
(screening held it), ``in_review`` (claimed by one officer), ``approved``, ``rejected``
and ``escalated`` (waiting for a senior officer). Every transition is one conditional
``UPDATE ... WHERE status IN (...)``: of two officers deciding at once exactly one
changes the row, the other gets a ConflictError (exit 4) naming who acted first. The
review decision row and the audit entry are written in the same transaction.

Rules an approval must pass: no active hold on the account (a security-change hold
after a 2FA reset, or a freeze), the destination is not blocklisted, and above the
asset's approval limit (``[screening] approval_limits``; assets without a limit always)
a second, senior officer approves through the four-eyes primitive
(kind ``withdrawal.approve``): the withdrawal stays ``in_review`` until then.

Listings are paged (``LIMIT``/``OFFSET`` over indexed columns): the queue never loads
every withdrawal.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Row,
    Select,
    String,
    case,
    cast,
    exists,
    false,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from polysec_tui.db.models import (
    Account,
    ApprovalRequest,
    BlockedAddress,
    Hold,
    LoginEvent,
    Officer,
    ReviewDecision,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.db.types import record_id
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import outcomes
from polysec_tui.services.clients.accounts import AccountSummary
from polysec_tui.services.clients.accounts import summary as account_summary
from polysec_tui.services.officers import approvals, notifications
from polysec_tui.services.officers.auth import Actor, at_least, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import locks, prices, sanctions
from polysec_tui.services.withdrawals.holds import hold_in_force
from polysec_tui.services.withdrawals.screening import RULES, load_config
from polysec_tui.text import fmt_amount

STATUSES = ("pending", "held", "in_review", "approved", "rejected", "escalated")
OPEN = ("held", "escalated", "in_review")  # the review queue, held first
SORTS = ("risk", "age", "amount")
MAX_NOTE = 2000
COUNT_CAP = 10_000
MAX_SEARCH = 100
APPROVAL_KIND = "withdrawal.approve"


# ----------------------------------------------------------------------- views


@dataclass(frozen=True)
class QueueItem:
    id: int
    external_id: str
    account: str
    requested_at: datetime
    asset: str
    amount: Decimal
    address: str
    status: str
    risk_score: float | None
    rules: tuple[str, ...]
    claimed_by: str | None
    # In the reference currency (`prices`), when the platform feeds a price of the asset.
    value: Decimal | None = None
    currency: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class QueuePage:
    items: tuple[QueueItem, ...]
    total: int  # at most COUNT_CAP (then ``capped``): counting a million rows is slow
    offset: int
    limit: int
    capped: bool = False
    currency: str = prices.DEFAULT_CURRENCY  # what ``value`` is in
    priced: bool = False  # whether the platform feeds prices in it at all


@dataclass(frozen=True)
class FlagView:
    rule: str
    score: float
    explanation: str


@dataclass(frozen=True)
class LoginView:
    at: datetime
    success: bool
    ip: str
    country: str | None
    city: str | None
    asn: int | None
    device_id: str | None


@dataclass(frozen=True)
class WithdrawalView:
    external_id: str
    account: str
    requested_at: datetime
    asset: str
    amount: Decimal
    address: str
    status: str


@dataclass(frozen=True)
class DecisionView:
    officer: str
    decision: str
    note: str | None
    at: datetime


@dataclass(frozen=True)
class Seen:
    """The state of a withdrawal an officer decided from: its status and how many
    decisions it had (every claim, escalation, release... records one). A decision that
    carries it is refused if anything was recorded since: an officer looking at a stale
    screen must not approve over an escalation they never saw."""

    decisions: int
    status: str


@dataclass(frozen=True)
class HoldView:
    id: int
    kind: str
    reason: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class Detail:
    item: QueueItem
    account_id: uuid.UUID
    ip: str
    device_id: str | None
    login_external_id: str | None
    available_balance: Decimal | None
    address_label: str | None
    screened_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    approval_id: uuid.UUID | None
    blocklisted: str | None
    approval_limit: Decimal | None
    flags: tuple[FlagView, ...]
    account_summary: AccountSummary
    active_holds: tuple[HoldView, ...]
    recent_logins: tuple[LoginView, ...]
    recent_withdrawals: tuple[WithdrawalView, ...]
    address_history: tuple[WithdrawalView, ...]
    address_accounts: int
    decisions: tuple[DecisionView, ...] = field(default=())
    price: prices.Price | None = None  # what ``item.value`` was worked out from

    @property
    def seen(self) -> Seen:
        """What a decision taken from this view was taken on (`Seen`)."""
        return Seen(len(self.decisions), self.item.status)

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.item.as_dict()
        doc.update({
            "account_id": self.account_id, "ip": self.ip, "device_id": self.device_id,
            "login_id": self.login_external_id, "available_balance": self.available_balance,
            "address_label": self.address_label, "screened_at": self.screened_at,
            "decided_by": self.decided_by, "decided_at": self.decided_at,
            "approval_id": self.approval_id, "blocklisted": self.blocklisted,
            "approval_limit": self.approval_limit,
            "flags": [f.__dict__ for f in self.flags],
            "account_summary": self.account_summary.as_dict(),
            "active_holds": [h.__dict__ for h in self.active_holds],
            "recent_logins": [v.__dict__ for v in self.recent_logins],
            "recent_withdrawals": [v.__dict__ for v in self.recent_withdrawals],
            "address_history": [v.__dict__ for v in self.address_history],
            "address_accounts": self.address_accounts,
            "decisions": [d.__dict__ for d in self.decisions],
            "price": None if self.price is None else self.price.__dict__,
        })
        return doc


# ---------------------------------------------------------------------- queue


def _statuses(status: str | None) -> tuple[str, ...]:
    if status in (None, "open"):
        return OPEN
    if status not in STATUSES:
        raise InputError(f"unknown status {status!r}; use open or one of {', '.join(STATUSES)}")
    return (status,)


def list_queue(rt: Runtime, actor: Actor, *, status: str | None = None,
               asset: str | None = None, rule: str | None = None, sort: str = "risk",
               offset: int = 0, limit: int = 100,
               claimant: uuid.UUID | None = None, search: str | None = None) -> QueuePage:
    """One page of the queue: held first (with the default ``open``), then by ``sort``
    (risk: highest first; age: oldest first; amount: by value in the reference currency,
    the largest first, then the amounts without a price by asset, the largest first
    within each: they cannot be compared across assets). ``claimant``: only
    the withdrawals that officer holds the claim of. ``search``: only those whose id,
    account, destination address (each by its beginning), asset, rule or claiming
    officer is what was typed, what the queue's columns show."""
    require(actor, "read")
    if sort not in SORTS:
        raise InputError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    if rule is not None and rule not in RULES:
        raise InputError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise InputError("limit must be 1 to 1000 and offset at least 0")
    statuses = _statuses(status)
    w, v = Withdrawal, WithdrawalScreening
    filters = []  # besides the status
    if asset:
        filters.append(w.asset == asset.upper())
    if rule:
        filters.append(w.id.in_(select(WithdrawalFlag.withdrawal_id)
                                .where(WithdrawalFlag.rule == rule)))
    if claimant is not None:
        filters.append(w.claimed_by == claimant)
    if search is not None and search.strip():
        filters.append(_matching(search.strip(), rt.engine.dialect.name))
    where = [w.status.in_(statuses) if len(statuses) > 1 else w.status == statuses[0],
             *filters]
    currency = prices.reference_currency(rt.settings)
    price = prices.price_column(w.asset, w.requested_at, currency)
    with rt.sessions() as session:
        dialect = session.get_bind().dialect.name
        amount_key = cast(w.amount, Float) if dialect == "sqlite" else w.amount
        priced = prices.known(session, currency)
        order: list[Any] = []
        if len(statuses) > 1:
            order.append(case({s: i for i, s in enumerate(statuses)}, value=w.status))
        if sort == "risk":
            # NULL (not screened yet) last everywhere; SQLite and MariaDB do that for
            # DESC already.
            risk = v.risk_score.desc()
            order += [risk.nulls_last() if dialect == "postgresql" else risk,
                      w.requested_at]
        elif sort == "age":
            order += [w.requested_at]
        else:
            if priced:
                value = prices.value_order(w.amount, price, dialect).desc()
                order.append(value.nulls_last() if dialect == "postgresql" else value)
            # Amounts of different assets are not comparable without prices (34,741 DOGE
            # is not more than 12,621 USDT): the largest first within each asset.
            order += [w.asset, amount_key.desc(), w.requested_at]
        order.append(w.id)

        def count() -> int:
            capped_rows = select(w.id).where(*where).limit(COUNT_CAP + 1).subquery()
            return int(session.scalar(select(func.count()).select_from(capped_rows)) or 0)

        page = (select(w.id, w.external_id, Account.external_id, w.requested_at, w.asset,
                       w.amount, w.address, w.status, v.risk_score, Officer.name,
                       price if priced else null())
                .join(Account, Account.id == w.account_id)
                .outerjoin(Officer, Officer.id == w.claimed_by))
        rows: list[Row[*tuple[Any, ...]]]
        if sort == "risk" and len(statuses) == 1:
            total = count()
            rows = _by_risk(session, page, statuses[0], filters, offset, limit,
                            large=total > COUNT_CAP)
        else:
            # The page's ids first, ordered over the withdrawals and their verdicts
            # alone; only its rows then fetch the account, the officer and the price.
            # (Joined before sorting, every open withdrawal would: 7 ms of a page.)
            ids = (select(w.id).outerjoin(v, v.withdrawal_id == w.id).where(*where)
                   .order_by(*order).offset(offset).limit(limit))
            if dialect in ("mysql", "mariadb"):  # no LIMIT in an IN subquery there
                ids = select(ids.subquery().c.id)
            rows = list(session.execute(page.outerjoin(v, v.withdrawal_id == w.id)
                                        .where(w.id.in_(ids)).order_by(*order)))
            # A first page that is not full is all there is (a filter's, mostly): no
            # second pass over the rows to count them.
            total = len(rows) if offset == 0 and len(rows) < limit else count()
        rules = _rules_of(session, [r[0] for r in rows])
    items = tuple(QueueItem(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                            rules.get(r[0], ()), r[9], prices.value_of(r[5], r[10]),
                            currency) for r in rows)
    return QueuePage(items, min(total, COUNT_CAP), offset, limit, total > COUNT_CAP,
                     currency, priced)


def _matching(text: str, dialect: str) -> ColumnElement[bool]:
    """What the queue's filter line matches: the beginning of an id, an account or an
    address (their indexes serve it), an asset, a rule or an officer, exactly."""
    if len(text) > MAX_SEARCH:
        raise InputError(f"a filter of at most {MAX_SEARCH} characters")
    w, account = Withdrawal, aliased(Account)  # not the page's own join of Account
    by_account: ColumnElement[bool]
    if dialect == "sqlite":
        # Per withdrawal (the account by its key), not a list of every matching account:
        # SQLite cannot serve LIKE from the accounts' index and would read them all.
        by_account = exists().where(account.id == w.account_id,
                                    account.external_id.startswith(text, autoescape=True))
    else:  # one hashed list of the matching accounts
        by_account = w.account_id.in_(select(Account.id).where(
            Account.external_id.startswith(text, autoescape=True)))
    return or_(
        w.external_id.startswith(text, autoescape=True),
        by_account,
        w.address.startswith(text, autoescape=True),
        w.asset == text.upper(),
        w.id.in_(select(WithdrawalFlag.withdrawal_id).where(WithdrawalFlag.rule == text)),
        w.claimed_by.in_(select(Officer.id).where(Officer.name == text)),
    )


def _by_risk(session: Session, page: Select[*tuple[Any, ...]], status: str,
             filters: list[Any], offset: int, limit: int, *,
             large: bool) -> list[Row[*tuple[Any, ...]]]:
    """One page of one status by risk: the screened withdrawals first, then the
    unscreened, oldest first. For a ``large`` status (pending, or approved over time:
    most of a million rows) the screened ones are found by walking the verdicts' risk
    index down to the page, not by sorting every withdrawal of the status (a second)."""
    w, v = Withdrawal, WithdrawalScreening
    # SQLite keeps no statistics, so it would still pick the status index and sort;
    # `+status` (_NoIndex) leaves it the risk index. PostgreSQL's planner picks that
    # walk by itself where it pays.
    of_status = (_NoIndex(w.status) if large else w.status) == status
    rows = list(session.execute(
        page.join(v, v.withdrawal_id == w.id).where(of_status, *filters)
        .order_by(v.risk_score.desc(), w.requested_at, w.id).offset(offset).limit(limit)))
    if len(rows) == limit:
        return rows
    if rows or offset == 0:
        screened = offset + len(rows)
    else:  # the page starts past the screened ones
        screened = int(session.scalar(
            select(func.count()).select_from(w).join(v, v.withdrawal_id == w.id)
            .where(w.status == status, *filters)) or 0)
    return rows + list(session.execute(
        page.outerjoin(v, v.withdrawal_id == w.id)
        .where(w.status == status, *filters, v.withdrawal_id.is_(None))
        .order_by(w.requested_at, w.id)
        .offset(max(0, offset - screened)).limit(limit - len(rows))))


class _NoIndex(FunctionElement[str]):
    """A column SQLite may not answer from an index: ``+column`` there, the column
    itself elsewhere."""

    type = String()
    inherit_cache = True
    name = "polysec_no_index"


@compiles(_NoIndex)
def _no_index_default(element: _NoIndex, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return str(compiler.process(column, **kw))


@compiles(_NoIndex, "sqlite")
def _no_index_sqlite(element: _NoIndex, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"+{compiler.process(column, **kw)}"


# Withdrawals that wait for an officer: the review SLA runs for them.
WAITING = ("held", "escalated", "in_review")


def late_count(session: Session, now: datetime, sla_hours: float) -> int:
    """How many withdrawals wait for an officer longer than the review SLA."""
    return int(session.scalar(
        select(func.count()).select_from(Withdrawal).where(
            Withdrawal.status.in_(WAITING),
            Withdrawal.requested_at < now - timedelta(hours=sla_hours))) or 0)


def _rules_of(session: Session, ids: list[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, list[str]] = {}
    if ids:
        for wid, rule in session.execute(
            select(WithdrawalFlag.withdrawal_id, WithdrawalFlag.rule)
            .where(WithdrawalFlag.withdrawal_id.in_(ids))
        ):
            found.setdefault(wid, []).append(rule)
    return {wid: tuple(sorted(rs, key=RULES.index)) for wid, rs in found.items()}


def _find(session: Session, ref: str) -> Withdrawal:
    """A withdrawal by its platform id, or by the console's numeric id."""
    ref = ref.strip()
    found = session.scalars(select(Withdrawal).where(Withdrawal.external_id == ref)).first()
    if found is None and (row_id := record_id(ref)) is not None:
        found = session.get(Withdrawal, row_id)
    if found is None:
        raise InputError(f"no withdrawal {ref!r}")
    return found


def _name(session: Session, officer_id: uuid.UUID | None) -> str | None:
    if officer_id is None:
        return None
    return session.scalar(select(Officer.name).where(Officer.id == officer_id))


def _active_holds(session: Session, account_id: uuid.UUID, now: datetime) -> list[Hold]:
    return list(session.scalars(
        select(Hold).where(Hold.account_id == account_id, hold_in_force(now))
        .order_by(Hold.created_at)
    ))


def show(rt: Runtime, actor: Actor, ref: str, *, recent: int = 10) -> Detail:
    require(actor, "read")
    now = rt.clock()
    cfg = load_config(rt.settings)
    with rt.sessions() as session:
        wd = _find(session, ref)
        account = session.get(Account, wd.account_id)
        assert account is not None
        flags = tuple(FlagView(f.rule, f.score, f.explanation) for f in sorted(
            session.scalars(select(WithdrawalFlag).where(WithdrawalFlag.withdrawal_id == wd.id)),
            key=lambda f: RULES.index(f.rule) if f.rule in RULES else len(RULES)))
        holds = tuple(HoldView(h.id, h.kind, h.reason, h.created_at, h.expires_at)
                      for h in _active_holds(session, wd.account_id, now))
        logins = tuple(
            LoginView(e.at, e.success, e.ip, e.country, e.city, e.asn, e.device_id)
            for e in session.scalars(
                select(LoginEvent).where(LoginEvent.account_id == wd.account_id,
                                         LoginEvent.at <= wd.requested_at)
                .order_by(LoginEvent.at.desc(), LoginEvent.id.desc()).limit(recent)))
        other = aliased(Account)
        recent_wd = tuple(
            WithdrawalView(x.external_id, account.external_id, x.requested_at, x.asset,
                           x.amount, x.address, x.status)
            for x in session.scalars(
                select(Withdrawal).where(Withdrawal.account_id == wd.account_id,
                                         Withdrawal.id != wd.id)
                .order_by(Withdrawal.requested_at.desc(), Withdrawal.id.desc()).limit(recent)))
        history = tuple(
            WithdrawalView(x.external_id, ext, x.requested_at, x.asset, x.amount, x.address,
                           x.status)
            for x, ext in session.execute(
                select(Withdrawal, other.external_id)
                .join(other, other.id == Withdrawal.account_id)
                .where(Withdrawal.address == wd.address, Withdrawal.id != wd.id)
                .order_by(Withdrawal.requested_at.desc(), Withdrawal.id.desc()).limit(recent)))
        accounts = int(session.scalar(
            select(func.count(func.distinct(Withdrawal.account_id)))
            .where(Withdrawal.address == wd.address)) or 0)
        decisions = tuple(
            DecisionView(name, d.decision, d.note, d.decided_at)
            for d, name in session.execute(
                select(ReviewDecision, Officer.name)
                .join(Officer, Officer.id == ReviewDecision.officer_id)
                .where(ReviewDecision.withdrawal_id == wd.id)
                .order_by(ReviewDecision.decided_at, ReviewDecision.id)))
        blocked = session.scalar(select(BlockedAddress.reason)
                                 .where(BlockedAddress.address == wd.address))
        rules = tuple(f.rule for f in flags)
        verdict = session.get(WithdrawalScreening, wd.id)
        currency = prices.reference_currency(rt.settings)
        price = prices.price_at(session, wd.asset, wd.requested_at, currency)
        item = QueueItem(wd.id, wd.external_id, account.external_id, wd.requested_at,
                         wd.asset, wd.amount, wd.address, wd.status,
                         None if verdict is None else verdict.risk_score, rules,
                         _name(session, wd.claimed_by),
                         prices.value_of(wd.amount, price.price if price else None), currency)
        detail_args = (
            wd.account_id, wd.ip, wd.device_id, wd.login_external_id, wd.available_balance,
            wd.address_label, None if verdict is None else verdict.screened_at,
            _name(session, wd.decided_by), wd.decided_at,
            wd.approval_id, blocked, cfg.approval_limit(wd.asset), flags,
        )
        ext = account.external_id
    summary = account_summary(rt, actor, ext)
    return Detail(item, *detail_args, summary, holds, logins, recent_wd, history,
                  accounts, decisions, price)


# ------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Outcome:
    external_id: str
    status: str
    approval_id: uuid.UUID | None = None
    sanctioned: bool = False  # the request is for a sanctioned or known-bad destination

    def as_dict(self) -> dict[str, Any]:
        return {"withdrawal": self.external_id, "status": self.status,
                "approval_id": self.approval_id, "sanctioned": self.sanctioned}

    def summary(self) -> str:
        """What happened, for the officer (the id is platform text: render it inert)."""
        if self.approval_id is not None:
            why = ("its destination is sanctioned or known-bad" if self.sanctioned
                   else "it is above its approval limit")
            return (f"withdrawal {self.external_id}: {why}; four-eyes request "
                    f"{self.approval_id} opened for a senior officer")
        return f"withdrawal {self.external_id} {self.status}"


def _note(note: str | None, *, required: bool = True) -> str | None:
    text = (note or "").strip()
    if not text:
        if required:
            raise InputError("a note is required (--note)")
        return None
    if len(text) > MAX_NOTE:
        raise InputError(f"the note is longer than {MAX_NOTE} characters")
    return text


def _from_states(actor: Actor, *, allow_escalated: bool = True) -> Any:
    """Where this officer may act from: held, their own claim and, for senior
    officers, escalated withdrawals."""
    w = Withdrawal
    states = [w.status == "held",
              (w.status == "in_review") & (w.claimed_by == actor.officer_id)]
    if allow_escalated and at_least(actor, "senior"):
        states.append(w.status == "escalated")
    return or_(*states)


def _conflict(rt: Runtime, wid: int, actor: Actor, verb: str) -> ConflictError | RefusedError:
    """Why a conditional update changed nothing, read after the fact (it names who)."""
    with rt.sessions() as session:
        wd = session.get(Withdrawal, wid)
        assert wd is not None
        ext = wd.external_id
        if wd.status in ("approved", "rejected"):
            who = _name(session, wd.decided_by) or "the platform"
            when = f" at {wd.decided_at:%Y-%m-%d %H:%M:%S} UTC" if wd.decided_at else ""
            return ConflictError(f"withdrawal {ext} was already {wd.status} by {who}{when}")
        if wd.status == "in_review":
            who = _name(session, wd.claimed_by) or "?"
            if _waiting_request(session, wd, rt.clock()) is not None:
                return ConflictError(
                    f"withdrawal {ext} waits for four-eyes request {wd.approval_id} of {who}: "
                    "a senior officer decides it under Approvals (key 8, or "
                    f"polysec approvals approve {wd.approval_id})")
            if wd.claimed_by == actor.officer_id:
                return ConflictError(f"withdrawal {ext} is claimed by you already")
            return ConflictError(f"withdrawal {ext} is claimed by {who}; only they can {verb} "
                                 "(they can release it; a senior officer can reassign it)")
        if wd.status == "escalated":
            who = _name(session, wd.decided_by) or "?"
            if not at_least(actor, "senior"):
                return RefusedError(f"withdrawal {ext} was escalated by {who}: a senior "
                                    "officer decides it")
            return ConflictError(f"withdrawal {ext} was escalated by {who}")
        return ConflictError(f"withdrawal {ext} is {wd.status}: nothing to {verb}")


def _record(rt: Runtime, session: Session, actor: Actor, wd_id: int, ext: str, decision: str,
            note: str | None, now: datetime, **details: Any) -> None:
    session.add(ReviewDecision(withdrawal_id=wd_id, officer_id=actor.officer_id,
                               decision=decision, note=note, decided_at=now))
    rt.audit.append(session, officer=actor.name, action=f"withdrawal.{decision}", at=now,
                    target=f"withdrawal:{ext}", details={"note": note, **details})


def _transition(rt: Runtime, actor: Actor, ref: str, verb: str, allowed: Any,
                values: dict[str, Any], note: str | None,
                check: Any = None, judged: tuple[str, str | None] | None = None,
                lock: str | None = None, seen: Seen | None = None) -> Outcome:
    """``judged``: the outcome (and its reason) a final decision records. ``lock``: a
    named lock (``withdrawals.locks``) taken first, before anything is read (MariaDB's
    snapshot begins at the first read). ``seen``: what the officer decided from
    (`Seen`). A final decision or an escalation withdraws the four-eyes request the
    withdrawal waits for, if any: no senior can approve it afterwards."""
    now = rt.clock()
    try:
        with rt.transaction() as session:
            if lock is not None:
                locks.take(session, lock, now)
            wd = _find(session, ref)
            wid, ext, account_id, status = (wd.id, wd.external_id, wd.account_id,
                                            values["status"])
            request_id = wd.approval_id
            extra: dict[str, Any] = {} if judged is None else {"outcome": judged[0]}
            # The request's row before the withdrawal's: an approval's execution takes
            # them in that order (`approvals.withdraw`). Undone if anything below fails.
            if (status in ("approved", "rejected", "escalated") and request_id is not None
                    and approvals.withdraw(session, actor, request_id,
                                           f"withdrawn: withdrawal {ext} was {status} by "
                                           f"{actor.name}", now)):
                extra["withdrawn_request"] = str(request_id)
            if seen is not None:
                _unchanged_since(session, wd, seen)
                allowed = allowed & (Withdrawal.status == seen.status)
            if check is not None:
                check(session, wd, now)
            done = session.execute(
                update(Withdrawal).where(Withdrawal.id == wid, allowed)
                .values(**values).execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise _Lost(wid)
            _record(rt, session, actor, wid, ext, verb, note, now,
                    account=str(account_id), status=status, **extra)
            if judged is not None:
                outcomes.record(session, actor.officer_id, now, f"withdrawal:{ext}",
                                judged[0], judged[1] or note,
                                outcomes.screening_rules(session, wid))
            return Outcome(ext, status)
    except _Lost as lost:
        raise _conflict(rt, lost.wid, actor, verb) from None


def _unchanged_since(session: Session, wd: Withdrawal, seen: Seen) -> None:
    """Refuse a decision taken from a view of the withdrawal older than its last
    recorded change (`Seen`), saying what changed. Locking reads, the withdrawal's row
    first: they see the latest state (not MariaDB's snapshot), and no decision can be
    recorded between this check and the caller's update."""
    status = session.execute(select(Withdrawal.status).where(Withdrawal.id == wd.id)
                             .with_for_update()).scalar_one()
    recorded = session.execute(
        select(ReviewDecision.decided_at, ReviewDecision.id, ReviewDecision.decision,
               ReviewDecision.note, ReviewDecision.officer_id)
        .where(ReviewDecision.withdrawal_id == wd.id).with_for_update(read=True)).all()
    if len(recorded) == seen.decisions and status == seen.status:
        return
    what = f"it is {status} now (it was {seen.status})"
    if len(recorded) > seen.decisions:
        _at, _id, decision, note, officer_id = max(recorded, key=lambda r: (r[0], r[1]))
        said = f": {note[:80]}" if note else ""
        what = f"{_name(session, officer_id) or '?'} recorded {decision}{said}; {what}"
    raise ConflictError(f"withdrawal {wd.external_id} changed since you looked at it: "
                        f"{what}. Look at it again before deciding")


def claim(rt: Runtime, actor: Actor, ref: str, *, seen: Seen | None = None) -> Outcome:
    """Take a held (or, for senior officers, escalated) withdrawal into review."""
    require(actor, "review")
    expire_claims(rt, actor)
    now = rt.clock()
    w = Withdrawal
    allowed = or_(w.status == "held",
                  (w.status == "escalated") if at_least(actor, "senior") else false())
    return _transition(rt, actor, ref, "claim", allowed,
                       {"status": "in_review", "claimed_by": actor.officer_id,
                        "claimed_at": now}, None, seen=seen)


def reject(rt: Runtime, actor: Actor, ref: str, note: str, *,
           outcome: str = "confirmed_fraud", outcome_reason: str | None = None,
           seen: Seen | None = None) -> Outcome:
    """Reject; records the outcome (by default the hold caught fraud)."""
    require(actor, "review")
    text = _note(note)
    judged = outcomes.checked(outcome, outcome_reason)
    now = rt.clock()
    return _transition(rt, actor, ref, "reject", _from_states(actor),
                       {"status": "rejected", "decided_by": actor.officer_id,
                        "decided_at": now}, text, judged=judged, seen=seen)


def escalate(rt: Runtime, actor: Actor, ref: str, note: str, *,
             seen: Seen | None = None) -> Outcome:
    """Hand the withdrawal to the senior officers (the claim is released, and a
    four-eyes request it waited for is withdrawn)."""
    require(actor, "review")
    text = _note(note)
    now = rt.clock()
    return _transition(rt, actor, ref, "escalate", _from_states(actor, allow_escalated=False),
                       {"status": "escalated", "claimed_by": None, "claimed_at": None,
                        "approval_id": None, "decided_by": actor.officer_id,
                        "decided_at": now}, text, seen=seen)


def _approval_checks(session: Session, wd: Withdrawal, now: datetime) -> None:
    holds = _active_holds(session, wd.account_id, now)
    if holds:
        hold = holds[0]
        until = (f"until {hold.expires_at:%Y-%m-%d %H:%M} UTC" if hold.expires_at
                 else "until released")
        raise RefusedError(f"account has an active {hold.kind} hold (#{hold.id}, {until}): "
                           "withdrawals cannot be approved while it lasts")
    if session.scalar(select(BlockedAddress.id)
                      .where(BlockedAddress.address == wd.address)) is not None:
        raise RefusedError(f"destination {wd.address} is blocklisted: reject the withdrawal "
                           "or have a senior officer remove the address first")


def _single_approval_checks(session: Session, wd: Withdrawal, now: datetime) -> None:
    """An approval by one officer: also never to a sanctioned or known-bad destination.
    Its transaction took the sanctions lock first (which an import holds until it
    commits): a list imported since the officer chose this way is seen here."""
    _approval_checks(session, wd, now)
    if sanctions.second_officer_reasons(session, wd.id, wd.address):
        raise ConflictError(f"destination {wd.address} is on a sanctions list or was paid "
                            "by a confirmed fraud: approve again, and a second officer "
                            "must confirm")


def approve(rt: Runtime, actor: Actor, ref: str, note: str, *,
            outcome: str = "false_positive", outcome_reason: str | None = None,
            seen: Seen | None = None) -> Outcome:
    """Approve; above the asset's approval limit this opens a four-eyes request instead
    (the withdrawal stays in review, claimed by this officer, until a senior approves).
    Records the outcome with the final approval (by default: the hold was a false
    positive; ``benign`` with a reason when the activity was real but harmless)."""
    require(actor, "review")
    text = _note(note)
    assert text is not None
    judged = outcomes.checked(outcome, outcome_reason)
    cfg = load_config(rt.settings)
    now = rt.clock()
    with rt.sessions() as session:
        wd = _find(session, ref)
        amount, asset = wd.amount, wd.asset
        listed = sanctions.second_officer_reasons(session, wd.id, wd.address)
    limit = cfg.approval_limit(asset)
    # A sanctioned or known-bad destination always needs a second officer.
    if not listed and limit is not None and amount <= limit:
        return _transition(rt, actor, ref, "approve", _from_states(actor),
                           {"status": "approved", "decided_by": actor.officer_id,
                            "decided_at": now}, text, check=_single_approval_checks,
                           judged=judged, lock=locks.SANCTIONS, seen=seen)
    w = Withdrawal
    pending_request = (select(ApprovalRequest.id)
                       .where(ApprovalRequest.id == w.approval_id,
                              ApprovalRequest.status == "pending",
                              ApprovalRequest.expires_at > now))
    allowed = _from_states(actor) & ~pending_request.exists()
    try:
        return _request_approval(rt, actor, ref, allowed, text, limit, now, judged, listed,
                                 seen)
    except _Lost as lost:
        raise _conflict(rt, lost.wid, actor, "approve") from None


class _Lost(Exception):
    """The conditional update changed nothing: roll back, then explain who won."""

    def __init__(self, wid: int) -> None:
        super().__init__(wid)
        self.wid = wid


def _request_approval(rt: Runtime, actor: Actor, ref: str, allowed: Any, text: str,
                      limit: Decimal | None, now: datetime,
                      judged: tuple[str, str | None], listed: list[str],
                      seen: Seen | None) -> Outcome:
    with rt.transaction() as session:
        # The same lock order as a sanctions import (which writes hits, then the audit
        # log): MariaDB would otherwise deadlock the two.
        locks.take(session, locks.SANCTIONS, now)
        wd = _find(session, ref)
        if seen is not None:
            _unchanged_since(session, wd, seen)
        wid, account_id, ext, amount, asset = (wd.id, wd.account_id, wd.external_id,
                                               wd.amount, wd.asset)
        account_ext = session.scalar(select(Account.external_id)
                                     .where(Account.id == account_id))
        _approval_checks(session, wd, now)
        limit_text = f"{fmt_amount(limit)} {asset}" if limit is not None else "none configured"
        # First, where a shortened reason still shows it.
        sanctioned = f"SANCTIONED or KNOWN-BAD destination ({'; '.join(listed)}): " if (
            listed) else ""
        reason = (f"{sanctioned}approve withdrawal {ext}: {fmt_amount(amount)} {asset} to "
                  f"{wd.address} (approval limit {limit_text}); note: {text}")
        # The request row first: the withdrawal's foreign key points at it.
        request_id = approvals.open_request(
            rt, actor, APPROVAL, reason[:approvals.MAX_REASON],
            {"withdrawal_id": wid, "withdrawal": ext, "note": text,
             "account": account_ext, "account_id": str(account_id),
             "outcome": judged[0], "outcome_reason": judged[1]}, session=session)
        session.flush()
        done = session.execute(
            update(Withdrawal).where(Withdrawal.id == wid, allowed)
            .values(status="in_review", claimed_by=actor.officer_id,
                    claimed_at=now,  # activity: the claim's timeout counts from here
                    approval_id=request_id)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount == 1:  # type: ignore[attr-defined]
            _record(rt, session, actor, wid, ext, "request_approval", text, now,
                    account=str(account_id), request=str(request_id),
                    amount=fmt_amount(amount), asset=asset)
            return Outcome(ext, "in_review", request_id, sanctioned=bool(listed))
        raise _Lost(wid)


def _execute_approval(rt: Runtime, session: Session, request: ApprovalRequest,
                      approver: Actor) -> dict[str, Any]:
    """The four-eyes executor: a second officer approved; approve the withdrawal if it
    is still in review under this very request (not rejected meanwhile)."""
    wid = int(request.payload["withdrawal_id"])
    now = rt.clock()
    wd = session.get(Withdrawal, wid)
    if wd is None:
        raise InputError(f"withdrawal {wid} no longer exists")
    _approval_checks(session, wd, now)
    done = session.execute(
        update(Withdrawal).where(Withdrawal.id == wid, Withdrawal.status == "in_review",
                                 Withdrawal.approval_id == request.id,
                                 Withdrawal.claimed_by == request.requester_id)
        .values(status="approved", decided_by=approver.officer_id, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ConflictError(f"withdrawal {wd.external_id} is {wd.status} now; "
                            "the request can no longer approve it")
    note = f"four-eyes approval of request {request.id}"
    outcome = str(request.payload.get("outcome") or "false_positive")
    _record(rt, session, approver, wid, wd.external_id, "approve", note, now,
            account=str(wd.account_id), status="approved", request=str(request.id),
            outcome=outcome)
    reason = request.payload.get("outcome_reason") or request.payload.get("note")
    outcomes.record(session, approver.officer_id, now, f"withdrawal:{wd.external_id}",
                    outcome, None if reason is None else str(reason),
                    outcomes.screening_rules(session, wid))
    return {"withdrawal": wd.external_id, "status": "approved"}


def _approval_evidence(session: Session, request: ApprovalRequest) -> list[tuple[str, str]]:
    """The withdrawal as it is now: amount, destination, risk and rule hits, who holds it."""
    wid = request.payload.get("withdrawal_id")
    wd = session.get(Withdrawal, int(wid)) if isinstance(wid, int) else None
    if wd is None:
        return [("withdrawal", "not found")]
    verdict = session.get(WithdrawalScreening, wd.id)
    rules = _rules_of(session, [wd.id]).get(wd.id, ())
    account = session.scalar(select(Account.external_id).where(Account.id == wd.account_id))
    risk = "not screened" if verdict is None else f"{verdict.risk_score:.0f}"
    return [("withdrawal", f"{fmt_amount(wd.amount)} {wd.asset} to {wd.address}"
                           + (f" ({wd.address_label})" if wd.address_label else "")),
            ("account", str(account)),
            ("requested", f"{wd.requested_at:%Y-%m-%d %H:%M} UTC from {wd.ip}"),
            ("risk", f"{risk}; rules: {', '.join(rules) or 'none'}"),
            ("status", f"{wd.status}, claimed by {_name(session, wd.claimed_by) or 'nobody'}")]


APPROVAL = approvals.ApprovalKind(
    name=APPROVAL_KIND, min_role="senior", execute=_execute_approval,
    describe=lambda p: f"approve withdrawal {p.get('withdrawal')}",
    requester_permission="review", evidence=_approval_evidence,
)


# ------------------------------------------------------------- claims that move
#
# A claim ends with a decision, or: the claimant releases it; a senior officer
# reassigns it (with a reason; both officers are told); or nobody touches it for
# ``[screening] claim_timeout_minutes`` (30; 0 never) and it returns to the queue
# (`expire_claims`, run by the watcher and before every claim). A claim waiting for a
# four-eyes request stays while the request is pending: a senior decides the request
# (or denies it) first. Returned to the queue means as it was before the claim: held,
# or escalated (an escalation leaves its officer in ``decided_by``; nothing else
# before a final decision does).


def _waiting_request(session: Session, wd: Withdrawal, now: datetime) -> uuid.UUID | None:
    """The pending four-eyes request the withdrawal waits for, if any."""
    if wd.approval_id is None:
        return None
    return session.scalar(select(ApprovalRequest.id).where(
        ApprovalRequest.id == wd.approval_id, ApprovalRequest.status == "pending",
        ApprovalRequest.expires_at > now))


def _request_active_since(cutoff: datetime, now: datetime) -> Any:
    """The withdrawal's four-eyes request is pending, or was decided or expired after
    ``cutoff``: activity that keeps its claim."""
    r = ApprovalRequest
    return (select(r.id).where(
        r.id == Withdrawal.approval_id,
        or_((r.status == "pending") & (r.expires_at > now),
            func.coalesce(r.decided_at, r.expires_at) > cutoff))
        .exists())


def _same_request(wd: Withdrawal) -> Any:
    """The row still has the four-eyes request it had when read: a request opened
    meanwhile (PostgreSQL re-checks only the row's own columns after waiting on its
    lock, not a subquery) makes the update change nothing."""
    return (Withdrawal.approval_id.is_(None) if wd.approval_id is None
            else Withdrawal.approval_id == wd.approval_id)


def _back_to_queue() -> Any:
    return case((Withdrawal.decided_by.is_not(None), "escalated"), else_="held")


def release(rt: Runtime, actor: Actor, ref: str, *, seen: Seen | None = None) -> Outcome:
    """The claimant gives the withdrawal back to the queue."""
    require(actor, "review")
    now = rt.clock()
    with rt.transaction() as session:
        wd = _find(session, ref)
        wid, ext = wd.id, wd.external_id
        if seen is not None:
            _unchanged_since(session, wd, seen)
        if wd.status == "in_review" and wd.claimed_by == actor.officer_id:
            request = _waiting_request(session, wd, now)
            if request is not None:
                raise RefusedError(f"withdrawal {ext} waits for four-eyes request {request}: "
                                   "it stays claimed until a senior officer decides it")
        w = Withdrawal
        done = session.execute(
            update(w).where(w.id == wid, w.status == "in_review",
                            w.claimed_by == actor.officer_id, _same_request(wd))
            .values(status=_back_to_queue(), claimed_by=None, claimed_at=None)
            .execution_options(synchronize_session=False))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            status = str(session.scalar(select(w.status).where(w.id == wid)))
            _record(rt, session, actor, wid, ext, "release", None, now,
                    account=str(wd.account_id), status=status)
            return Outcome(ext, status)
    raise _conflict(rt, wid, actor, "release")


def reassign(rt: Runtime, actor: Actor, ref: str, to: str, reason: str, *,
             seen: Seen | None = None) -> Outcome:
    """A senior officer moves a claim to another officer, with a reason; the previous
    claimant and the new one are told."""
    require(actor, "review")
    if not at_least(actor, "senior"):
        raise RefusedError("only a senior officer or above can reassign a claim")
    text = _note(reason)
    now = rt.clock()
    with rt.transaction() as session:
        target = session.scalar(select(Officer).where(Officer.name == to.strip()))
        if target is None:
            raise InputError(f"no officer {to!r}")
        if target.disabled or not Actor(target.id, target.name, target.role).can("review"):
            raise RefusedError(f"officer {target.name} cannot review withdrawals "
                               f"({'disabled' if target.disabled else target.role})")
        wd = _find(session, ref)
        wid, ext, previous = wd.id, wd.external_id, wd.claimed_by
        if seen is not None:
            _unchanged_since(session, wd, seen)
        if wd.status != "in_review" or previous is None:
            raise ConflictError(f"withdrawal {ext} is {wd.status}, not claimed: "
                                f"nothing to reassign")
        if previous == target.id:
            raise InputError(f"withdrawal {ext} is claimed by {target.name} already")
        request = _waiting_request(session, wd, now)
        if request is not None:
            raise RefusedError(f"withdrawal {ext} waits for four-eyes request {request}: "
                               "decide or deny the request under Approvals first")
        if wd.decided_by is not None and not at_least(
                Actor(target.id, target.name, target.role), "senior"):
            raise RefusedError(f"withdrawal {ext} was escalated: only a senior officer can "
                               f"take it over, and {target.name} is {target.role}")
        w = Withdrawal
        done = session.execute(
            update(w).where(w.id == wid, w.status == "in_review", w.claimed_by == previous,
                            _same_request(wd))
            .values(claimed_by=target.id, claimed_at=now)
            .execution_options(synchronize_session=False))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            before = _name(session, previous) or "?"
            _record(rt, session, actor, wid, ext, "reassign", text, now,
                    account=str(wd.account_id), status="in_review", previous=before,
                    to=target.name)
            subject = f"withdrawal:{ext}"
            notifications.send(session, previous, now, "claim.reassigned",
                               f"{actor.name} reassigned withdrawal {ext} from you to "
                               f"{target.name}: {text}", subject)
            notifications.send(session, target.id, now, "claim.assigned",
                               f"{actor.name} assigned withdrawal {ext} to you "
                               f"(was {before}'s): {text}", subject)
            return Outcome(ext, "in_review")
    raise _conflict(rt, wid, actor, "reassign")


def expire_claims(rt: Runtime, actor: Actor) -> list[str]:
    """Return the claims idle for longer than the claim timeout to the queue (each
    audited, its officer told); the withdrawals' ids."""
    minutes = load_config(rt.settings).claim_timeout_minutes
    if minutes <= 0:
        return []
    now = rt.clock()
    cutoff = now - timedelta(minutes=minutes)
    w = Withdrawal
    stale = (w.status == "in_review", w.claimed_at < cutoff,
             ~_request_active_since(cutoff, now))
    with rt.sessions() as session:  # the usual case: nothing, one indexed read
        if session.scalar(select(w.id).where(*stale).limit(1)) is None:
            return []
    expired: list[str] = []
    with rt.transaction() as session:
        for wid, ext, account_id, claimant, request_id in session.execute(
                select(w.id, w.external_id, w.account_id, w.claimed_by, w.approval_id)
                .where(*stale).order_by(w.id).limit(1000)).all():
            same_request = (w.approval_id.is_(None) if request_id is None
                            else w.approval_id == request_id)
            done = session.execute(
                update(w).where(w.id == wid, w.claimed_by == claimant, same_request, *stale)
                .values(status=_back_to_queue(), claimed_by=None, claimed_at=None)
                .execution_options(synchronize_session=False))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                continue  # decided or released meanwhile
            who = _name(session, claimant) or "?"
            note = f"claim of {who} expired after {minutes:g} min without activity"
            # Recorded under the officer whose action ran the sweep; the cause is the
            # timeout, not them.
            _record(rt, session, actor, wid, ext, "claim_expired", note, now,
                    account=str(account_id), previous=who, by="timeout")
            if claimant is not None:
                notifications.send(session, claimant, now, "claim.expired",
                                   f"your claim on withdrawal {ext} expired after "
                                   f"{minutes:g} min without activity: it is back in "
                                   "the queue", f"withdrawal:{ext}")
            expired.append(ext)
    return expired


def claim_next(rt: Runtime, actor: Actor) -> Outcome | None:
    """Claim the most urgent unclaimed withdrawal: past its review SLA first, then the
    highest risk, then the oldest (escalated ones too for senior officers). Two officers
    asking at once never get the same one: each try is a conditional update, and a lost
    race moves on to the next candidate. None when nothing waits."""
    require(actor, "review")
    expire_claims(rt, actor)
    cfg = load_config(rt.settings)
    now = rt.clock()
    w, v = Withdrawal, WithdrawalScreening
    statuses = ("held", "escalated") if at_least(actor, "senior") else ("held",)
    late = case((w.requested_at <= now - timedelta(hours=cfg.review_sla_hours), 0), else_=1)
    for _round in range(5):
        with rt.sessions() as session:
            risk = v.risk_score.desc()
            if session.get_bind().dialect.name == "postgresql":
                risk = risk.nulls_last()
            candidates = list(session.scalars(
                select(w.id).outerjoin(v, v.withdrawal_id == w.id)
                .where(w.status.in_(statuses))
                .order_by(late, risk, w.requested_at, w.id).limit(16)))
        if not candidates:
            return None
        for wid in candidates:
            with rt.transaction() as session:
                done = session.execute(
                    update(w).where(w.id == wid, w.status.in_(statuses))
                    .values(status="in_review", claimed_by=actor.officer_id, claimed_at=now)
                    .execution_options(synchronize_session=False))
                if done.rowcount == 1:  # type: ignore[attr-defined]
                    ext, account_id = session.execute(
                        select(w.external_id, w.account_id).where(w.id == wid)).one()
                    _record(rt, session, actor, wid, ext, "claim", None, now,
                            account=str(account_id), status="in_review", via="next")
                    return Outcome(ext, "in_review")
    raise ConflictError("other officers claimed every candidate first; try again")
