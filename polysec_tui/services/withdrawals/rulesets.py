"""Rule sets: screening's thresholds and weights and the login detectors' thresholds,
changed like code (`polysec rules`).

A change is a new version holding every rule parameter (screening's
``RULE_PARAMETERS``, and the login detectors' under ``logins``): `propose` reads a
``[screening]`` and/or a ``[logins]`` table from a TOML file over the version in force
and opens a four-eyes request in the same transaction. `backtest` replays the proposal
and the version in force over the withdrawals of a period (`screening.replay`: the same
rules, reading only) and records the figures on the proposal: holds added and removed,
and per rule the hits, precision and recall against the outcomes officers recorded;
where the login thresholds differ, it also replays the login detectors over the
period's logins under both (services/logins/replay.py: on a scratch copy), with the
findings added and removed and per detector the same figures against the outcomes
recorded on alerts. A
second officer approves the request (`polysec approvals approve`); approval refuses a
proposal without a backtest against the version in force now, or one based on a
version that is no longer in force (two proposals approved one after the other would
otherwise silently undo the first). Approval makes it the version in force: screening
and the watcher pick it up at their next pass (`screening.in_force`,
`login_thresholds.in_force`). While its request is pending a proposal runs in shadow
beside the version in force on every new withdrawal, and its login thresholds on every
new login (`anomalies._shadow_passes`), and `shadow` reports where they disagreed; it
holds nothing and stores no finding.

Precision and recall are of labelled withdrawals only: officers record outcomes mostly
for what was held, so recall is that of the frauds known, and a hold added on a
withdrawal nobody judged counts in neither.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    Account,
    ApprovalRequest,
    CaseOutcome,
    LoginEvent,
    Officer,
    RuleSet,
    RuleSetLoginShadow,
    RuleSetShadow,
    Withdrawal,
)
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services.logins import replay as login_replay
from polysec_tui.services.logins import thresholds as login_thresholds
from polysec_tui.services.logins.rules import DEFAULTS as LOGIN_DEFAULTS
from polysec_tui.services.logins.rules import FINDING_COLUMNS, Thresholds
from polysec_tui.services.officers import approvals
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import locks, screening
from polysec_tui.services.withdrawals.screening import RULE_PARAMETERS, ScreeningConfig

KIND = "rule_set"
# Long enough to run a proposal in shadow for a week or two before deciding.
REQUEST_TTL = timedelta(days=14)
MAX_FILE = 64 * 1024
# Withdrawals named one by one in a backtest's holds added and removed.
LISTED = 200
# A change of login thresholds is approved on a backtest of a week or more: a detector
# that fires a few times a week must have had the chance to.
MIN_LOGIN_DAYS = 7


# ------------------------------------------------------------------------ proposing


@dataclass(frozen=True)
class Proposed:
    version: int
    based_on: int | None
    request_id: uuid.UUID
    changes: dict[str, list[Any]]


def propose(rt: Runtime, actor: Actor, path: Path, reason: str) -> Proposed:
    """Record a new version: the version in force with the ``[screening]`` table of
    ``path`` applied, and its four-eyes request; audited, one transaction."""
    require(actor, "rules.propose")
    section, logins_section = _read_proposal(path)
    base = screening.load_config(rt.settings)
    with rt.transaction() as session:
        now = rt.clock()
        live, shadows = screening.in_force(session, base, now)
        live_logins, _version = login_thresholds.in_force(session)
        if len(shadows) >= screening.MAX_SHADOWS:
            running = ", ".join(f"v{c.rule_set}" for c in shadows)
            raise RefusedError(f"{len(shadows)} proposals are pending already ({running}), "
                               "each judging every new withdrawal in shadow: deny one or "
                               "let it expire first")
        proposed = screening.parse_section(section, live, f"{path.name}: [screening]")
        proposed_logins = login_thresholds.parse_section(logins_section, live_logins,
                                                         f"{path.name}: [logins]")
        before = parameters_of(live, live_logins)
        after = parameters_of(proposed, proposed_logins)
        changes = _changes(before, after)
        if not changes:
            raise InputError(f"{path.name}: the proposal changes nothing in the rule set "
                             f"in force ({_version_name(live.rule_set)})")
        login_shadows = login_thresholds.shadows(session, now, live_logins)
        if proposed_logins != live_logins and len(
                login_shadows) >= login_thresholds.MAX_SHADOWS:
            running = ", ".join(f"v{version}" for version, _t in login_shadows)
            raise RefusedError(f"{len(login_shadows)} proposals of login thresholds are "
                               f"pending already ({running}), each judging every new login "
                               "in shadow: deny one or let it expire first")
        row = RuleSet(based_on=live.rule_set, parameters=after, changes=changes,
                      reason=reason.strip(), proposed_by=actor.officer_id, proposed_at=now,
                      shadow_judged=0)
        session.add(row)
        session.flush()
        request_id = approvals.open_request(rt, actor, APPROVAL, reason,
                                            {"rule_set": row.id}, ttl=REQUEST_TTL,
                                            session=session)
        row.request_id = request_id
        rt.audit.append(session, officer=actor.name, action="rules.propose", at=now,
                        target=f"rule_set:{row.id}",
                        details={"based_on": live.rule_set, "changes": changes,
                                 "request": str(request_id)})
        return Proposed(row.id, live.rule_set, request_id, changes)


def _read_proposal(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``[screening]`` and ``[logins]`` tables of a proposal file (either may be
    absent, not both), rule parameters only."""
    try:
        with path.open("rb") as file:  # read at most the limit: a FIFO or /dev/zero too
            raw = file.read(MAX_FILE + 1)
        if len(raw) > MAX_FILE:
            raise InputError(f"{path.name}: larger than {MAX_FILE // 1024} KiB")
        doc = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path.name}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path.name}: not valid TOML: {exc}") from None
    extra = sorted(set(doc) - {"screening", "logins"})
    tables = [doc.get(name, {}) for name in ("screening", "logins")]
    if extra or not (set(doc) & {"screening", "logins"}) or not all(
            isinstance(table, dict) for table in tables):
        raise InputError(f"{path.name}: a proposal is a [screening] table, a [logins] "
                         "table or both" + (f" (found {', '.join(extra)})" if extra else ""))
    section, logins_section = tables
    for key in section:
        if key in screening.OPERATIONAL:
            raise InputError(f"{path.name}: [screening] {key} is not a rule parameter: "
                             "it stays in the configuration file")
    return section, logins_section


def parameters_of(cfg: ScreeningConfig, t: Thresholds) -> dict[str, Any]:
    """A version's parameters: screening's, and the login detectors' under ``logins``."""
    return screening.parameters_of(cfg) | {"logins": login_thresholds.parameters_of(t)}


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """What differs, flat: ``{"hold_threshold": [50.0, 55.0], "weights.velocity": ...}``."""
    changes: dict[str, list[Any]] = {}
    for key in (*RULE_PARAMETERS, "logins"):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    changes[f"{key}.{name}"] = [old.get(name), new.get(name)]
        elif old != new:
            changes[key] = [old, new]
    return changes


def _version_name(version: int | None) -> str:
    return "the configuration file's" if version is None else f"v{version}"


# --------------------------------------------------------------------- backtesting


@dataclass(frozen=True)
class HoldFigures:
    """One set's holds over the period: how many, how many of them confirmed fraud and
    decided (any outcome), precision and recall against the labelled withdrawals."""

    holds: int
    confirmed: int
    decided: int
    precision: float | None
    recall: float | None


@dataclass(frozen=True)
class RuleComparison:
    rule: str
    live: HoldFigures  # ``holds`` here: the withdrawals the rule fired on
    proposed: HoldFigures


@dataclass(frozen=True)
class DetectorComparison:
    detector: str
    live: HoldFigures  # ``holds`` here: the alert subjects the detector flagged
    proposed: HoldFigures
    added: int  # findings only the proposal makes
    removed: int  # findings only the version in force makes


@dataclass(frozen=True)
class LoginBacktest:
    """The login detectors replayed over the period's logins under both sets of
    thresholds; precision and recall of the alert subjects they flag (an account, or a
    campaign's source) against the outcomes recorded on alerts."""

    logins: int
    days: float  # how much of the period the logins cover: approval wants MIN_LOGIN_DAYS
    fraud: int  # alert subjects labelled confirmed fraud
    decided: int  # labelled with any outcome
    findings_live: int
    findings_proposed: int
    added: list[str]  # "brute_force on lgn_..." only the proposal finds
    removed: list[str]
    added_count: int
    removed_count: int
    detectors: list[DetectorComparison]
    seconds: float
    silenced: list[str] = field(default_factory=list)  # findings under live, none proposed
    # Withdrawals of the period on accounts whose findings change: screening reads the
    # findings (risky_session, recent_anomalies, a login's vouching), so the backtest
    # judges them again with each set's findings (`Backtest.findings_replayed`).
    withdrawals_affected: int = 0


@dataclass(frozen=True)
class Backtest:
    version: int
    live_version: int | None
    since: datetime
    until: datetime
    judged: int
    fraud: int  # labelled confirmed fraud among them
    decided: int  # labelled with any outcome
    live: HoldFigures
    proposed: HoldFigures
    added: list[str]  # withdrawals the proposal holds and the version in force does not
    removed: list[str]
    added_count: int
    removed_count: int
    rules: list[RuleComparison] = field(default_factory=list)
    seconds: float = 0.0
    screening_changed: bool = True  # else only withdrawals whose login findings change
    logins: LoginBacktest | None = None  # when the login thresholds differ
    # Screening judged each side with its own login findings (the replay's): when the
    # login thresholds differ. With screening's parameters unchanged, only the
    # withdrawals on accounts whose findings change are judged (the others cannot).
    findings_replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _figures(flagged: set[Any], outcomes: dict[Any, str], fraud: int) -> HoldFigures:
    confirmed = sum(1 for wid in flagged if outcomes.get(wid) == "confirmed_fraud")
    decided = sum(1 for wid in flagged if wid in outcomes)
    return HoldFigures(len(flagged), confirmed, decided,
                       confirmed / decided if decided else None,
                       confirmed / fraud if fraud else None)


def backtest(rt: Runtime, actor: Actor, version: int, since: datetime) -> Backtest:
    """Replay rule set ``version`` and the version in force over the withdrawals
    requested since ``since``; the figures are recorded on the proposal (what its
    approval checks) and audited."""
    require(actor, "rules.propose")
    began = time.monotonic()
    base = screening.load_config(rt.settings)
    until = rt.clock()
    if since >= until:
        raise InputError("the backtest's period must start in the past")
    with rt.sessions() as session:
        row = _get(session, version)
        _still_proposed(session, row, until)
        live, _shadows = screening.in_force(session, base, until)
        proposed = screening.with_rule_set(base, version, row.parameters)
        live_logins, _live_version = login_thresholds.in_force(session)
        proposed_logins = login_thresholds.from_parameters(row.parameters.get("logins"))
        outcomes = _outcomes(session, since, until)
        alert_outcomes = login_replay.alert_outcomes(session, since)
    screening_changed = (screening.parameters_of(live) != screening.parameters_of(proposed))
    login_test: LoginBacktest | None = None
    batches: Iterable[dict[int, list[screening.Replayed]]] = []
    if live_logins != proposed_logins:
        replayed = login_replay.replay(rt, [live_logins, proposed_logins], since, until)
        login_test, changed = _login_backtest(rt, replayed, since, until, alert_outcomes)
        if screening_changed or changed:
            batches = [screening.replay_with_findings(
                rt, [(live, replayed.rows[0]), (proposed, replayed.rows[1])], since, until,
                None if screening_changed else changed)]
    elif screening_changed:
        batches = screening.replay(rt, [live, proposed], since, until)
    holds: tuple[set[int], set[int]] = (set(), set())
    fired: tuple[dict[str, set[int]], dict[str, set[int]]] = ({}, {})
    judged: set[int] = set()
    for batch in batches:
        judged.update(batch)
        for wid, verdicts in batch.items():
            for i, verdict in enumerate(verdicts):
                if verdict.held:
                    holds[i].add(wid)
                for rule in verdict.rules:
                    fired[i].setdefault(rule, set()).add(wid)
    if not screening_changed:
        # Only the withdrawals whose login findings change were judged: precision and
        # recall are of those (the others' verdicts are the same on both sides).
        outcomes = {wid: o for wid, o in outcomes.items() if wid in judged}
    fraud = sum(1 for o in outcomes.values() if o == "confirmed_fraud")
    added, removed = holds[1] - holds[0], holds[0] - holds[1]
    names = _external_ids(rt, sorted(added)[:LISTED] + sorted(removed)[:LISTED])
    rules = [RuleComparison(rule, _figures(fired[0].get(rule, set()), outcomes, fraud),
                            _figures(fired[1].get(rule, set()), outcomes, fraud))
             for rule in screening.RULES if rule in fired[0] or rule in fired[1]]
    result = Backtest(
        version, live.rule_set, since, until, len(judged), fraud, len(outcomes),
        _figures(holds[0], outcomes, fraud), _figures(holds[1], outcomes, fraud),
        [names[w] for w in sorted(added)[:LISTED] if w in names],
        [names[w] for w in sorted(removed)[:LISTED] if w in names],
        len(added), len(removed), rules, 0.0, screening_changed, login_test,
        login_test is not None)
    result = replace(result, seconds=round(time.monotonic() - began, 3))
    doc = _jsonable(result.as_dict()) | {"live_digest": digest(live, live_logins)}
    with rt.transaction() as session:
        locks.take(session, locks.RULE_SETS, rt.clock())
        row = _get(session, version)
        _still_proposed(session, row, rt.clock())  # decided meanwhile: figures kept
        row.backtest, row.backtested_at, row.backtested_by = doc, rt.clock(), actor.officer_id
        rt.audit.append(session, officer=actor.name, action="rules.backtest",
                        at=rt.clock(), target=f"rule_set:{version}",
                        details={"live_version": live.rule_set, "since": since.isoformat(),
                                 "judged": len(judged), "holds_live": result.live.holds,
                                 "holds_proposed": result.proposed.holds,
                                 "added": result.added_count,
                                 "removed": result.removed_count})
    return result


def _login_backtest(rt: Runtime, replayed: login_replay.Replayed, since: datetime,
                    until: datetime, outcomes: dict[str, tuple[str, set[str]]]
                    ) -> tuple[LoginBacktest, set[uuid.UUID]]:
    """Per detector, the alert subjects it flags under each set of ``replayed``
    (the thresholds in force, the proposal's), weighed against the outcomes of the
    alerts it took part in (an account's alert covers all its findings: an outcome
    counts for the detectors its alert named); and the accounts whose findings change,
    in the period or before it (screening reads earlier findings too: a login's
    vouching, the days before a request)."""
    before, after = replayed.findings
    labels = {subject: outcome for subject, (outcome, _d) in outcomes.items()}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    detectors = []
    for kind in sorted({k for k, _ext in before} | {k for k, _ext in after}):
        mine = {s: o for s, (o, named) in outcomes.items() if kind in named}
        fraud = sum(1 for o in mine.values() if o == "confirmed_fraud")
        subjects = [{s for (k, _e), (s, _a) in found.items() if k == kind}
                    for found in (before, after)]
        detectors.append(DetectorComparison(
            kind, _figures(subjects[0], mine, fraud), _figures(subjects[1], mine, fraud),
            sum(1 for k, _e in added if k == kind), sum(1 for k, _e in removed if k == kind)))
    live_rows, proposed_rows = (set(rows) for rows in replayed.rows)
    changed = {row[FINDING_COLUMNS.index("account_id")]
               for row in live_rows ^ proposed_rows}
    return LoginBacktest(
        replayed.logins, replayed.days,
        sum(1 for o in labels.values() if o == "confirmed_fraud"), len(labels),
        len(before), len(after),
        [f"{k} on {e}" for k, e in added[:LISTED]], [f"{k} on {e}" for k, e in removed[:LISTED]],
        len(added), len(removed), detectors, round(replayed.seconds, 3),
        [d.detector for d in detectors if d.live.holds and not d.proposed.holds],
        _withdrawals_of(rt, changed, since, until)), changed


def _withdrawals_of(rt: Runtime, accounts: set[uuid.UUID], since: datetime,
                    until: datetime) -> int:
    ids = sorted(accounts, key=str)
    total = 0
    with rt.sessions() as session:
        for i in range(0, len(ids), 1000):
            total += int(session.scalar(
                select(func.count()).select_from(Withdrawal)
                .where(Withdrawal.account_id.in_(ids[i:i + 1000]),
                       Withdrawal.requested_at >= since,
                       Withdrawal.requested_at < until)) or 0)
    return total


def digest(cfg: ScreeningConfig, t: Thresholds) -> str:
    """What a backtest compared against: the version in force and its parameters (the
    configuration file's, while no version was approved, can change under a proposal)."""
    doc = {"rule_set": cfg.rule_set, **parameters_of(cfg, t)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def _still_proposed(session: Session, row: RuleSet, now: datetime) -> None:
    """Refuse to backtest a version that is no longer a proposal: the figures its
    approver saw stay as they were."""
    state = "in force or superseded" if row.activated_at is not None else \
        _request_status(session, row, now)
    if state != "pending":
        raise InputError(f"rule set v{row.id} is no longer a proposal ({state}): its "
                         "figures stay as they were decided on")


def _outcomes(session: Session, since: datetime, until: datetime) -> dict[int, str]:
    """The latest outcome recorded for each withdrawal requested in the period, by id
    (an outcome is recorded after its withdrawal was requested)."""
    latest: dict[str, str] = {}
    for subject, outcome in session.execute(
            select(CaseOutcome.subject, CaseOutcome.outcome)
            .where(CaseOutcome.subject.like("withdrawal:%"), CaseOutcome.at >= since)
            .order_by(CaseOutcome.at, CaseOutcome.id)):
        latest[subject.removeprefix("withdrawal:")] = outcome
    ids: dict[int, str] = {}
    exts = list(latest)
    for i in range(0, len(exts), 1000):
        for wid, ext in session.execute(
                select(Withdrawal.id, Withdrawal.external_id)
                .where(Withdrawal.external_id.in_(exts[i:i + 1000]),
                       Withdrawal.requested_at >= since, Withdrawal.requested_at < until)):
            ids[int(wid)] = latest[ext]
    return ids


def _external_ids(rt: Runtime, ids: list[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    with rt.sessions() as session:
        for i in range(0, len(ids), 1000):
            names.update((int(w), e) for w, e in session.execute(
                select(Withdrawal.id, Withdrawal.external_id)
                .where(Withdrawal.id.in_(ids[i:i + 1000]))))
    return names


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


# -------------------------------------------------------------------------- shadow


@dataclass(frozen=True)
class Disagreement:
    withdrawal: str
    judged_at: datetime
    live_score: float
    shadow_score: float
    live_held: bool
    shadow_held: bool
    rules_added: list[str]
    rules_removed: list[str]


@dataclass(frozen=True)
class LoginDisagreement:
    login: str
    account: str
    at: datetime  # the login's
    judged_at: datetime
    detector: str
    live_severity: str | None  # None: not found
    shadow_severity: str | None


@dataclass(frozen=True)
class ShadowReport:
    version: int
    running: bool  # its request still pending: new events are judged by it
    judged: int
    disagreements: int
    holds_added: int
    holds_removed: int
    shown: list[Disagreement]
    # Its login thresholds on new logins (none judged while they equal those in force).
    logins_judged: int = 0
    login_disagreements: int = 0
    findings_added: dict[str, int] = field(default_factory=dict)  # by detector
    findings_removed: dict[str, int] = field(default_factory=dict)
    severity_changed: dict[str, int] = field(default_factory=dict)
    logins_shown: list[LoginDisagreement] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shadow(rt: Runtime, actor: Actor, version: int, *, limit: int = 100) -> ShadowReport:
    """Where the proposal, run in shadow on new withdrawals, disagreed with the version
    in force (newest first, at most ``limit`` listed)."""
    require(actor, "read")
    with rt.sessions() as session:
        row = _get(session, version)
        running = _request_status(session, row, rt.clock()) == "pending"
        s = RuleSetShadow
        counts = Counter({(bool(live), bool(prop)): int(n) for live, prop, n in session.execute(
            select(s.live_held, s.shadow_held, func.count()).where(s.rule_set_id == version)
            .group_by(s.live_held, s.shadow_held))})
        shown = [Disagreement(ext, at, live_score, shadow_score, bool(lh), bool(sh),
                              sorted(set(sr) - set(lr)), sorted(set(lr) - set(sr)))
                 for ext, at, live_score, shadow_score, lh, sh, lr, sr in session.execute(
                     select(Withdrawal.external_id, s.judged_at, s.live_score, s.shadow_score,
                            s.live_held, s.shadow_held, s.live_rules, s.shadow_rules)
                     .join(Withdrawal, Withdrawal.id == s.withdrawal_id)
                     .where(s.rule_set_id == version)
                     .order_by(s.withdrawal_id.desc()).limit(limit))]
        added, removed, changed = _login_disagreements(session, version)
        ls = RuleSetLoginShadow
        logins_shown = [
            LoginDisagreement(login, account, at, judged_at, kind, live, theirs)
            for login, account, at, judged_at, kind, live, theirs in session.execute(
                select(LoginEvent.external_id, Account.external_id, LoginEvent.at,
                       ls.judged_at, ls.kind, ls.live_severity, ls.shadow_severity)
                .join(LoginEvent, LoginEvent.id == ls.login_event_id)
                .join(Account, Account.id == LoginEvent.account_id)
                .where(ls.rule_set_id == version)
                .order_by(ls.login_event_id.desc(), ls.kind).limit(limit))]
    return ShadowReport(version, running, int(row.shadow_judged), sum(counts.values()),
                        counts[(False, True)], counts[(True, False)], shown,
                        int(row.shadow_logins or 0),
                        sum(added.values()) + sum(removed.values()) + sum(changed.values()),
                        added, removed, changed, logins_shown)


def _login_disagreements(session: Session, version: int
                         ) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """The proposal's login findings in shadow, by detector: those it adds, those it
    removes, and those it finds at another severity."""
    ls = RuleSetLoginShadow
    added: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    for kind, live_none, shadow_none, n in session.execute(
            select(ls.kind, ls.live_severity.is_(None), ls.shadow_severity.is_(None),
                   func.count()).where(ls.rule_set_id == version)
            .group_by(ls.kind, ls.live_severity.is_(None), ls.shadow_severity.is_(None))):
        target = added if live_none else removed if shadow_none else changed
        target[kind] += int(n)
    return dict(sorted(added.items())), dict(sorted(removed.items())), dict(
        sorted(changed.items()))


# ------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class RuleSetView:
    version: int
    status: str  # in force | superseded | proposed | denied | expired
    based_on: int | None
    reason: str
    proposed_by: str
    proposed_at: datetime
    changes: dict[str, list[Any]]
    request_id: str | None
    backtested_at: datetime | None
    backtested_by: str | None
    backtest: dict[str, Any] | None
    activated_at: datetime | None
    activated_by: str | None
    shadow_judged: int
    parameters: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_sets(rt: Runtime, actor: Actor) -> list[RuleSetView]:
    """Every version, newest first."""
    require(actor, "read")
    with rt.sessions() as session:
        return [_view(session, row, rt.clock())
                for row in session.scalars(select(RuleSet).order_by(RuleSet.id.desc()))]


def show(rt: Runtime, actor: Actor, version: int | None) -> tuple[RuleSetView | None,
                                                                  dict[str, Any]]:
    """One version (``None``: the one in force) and the parameters screening would
    judge by under it; no view while the configuration file's are in force."""
    require(actor, "read")
    base = screening.load_config(rt.settings)
    with rt.sessions() as session:
        if version is None:
            live, _shadows = screening.in_force(session, base, rt.clock())
            if live.rule_set is None:
                return None, parameters_of(live, LOGIN_DEFAULTS)
            version = live.rule_set
        row = _get(session, version)
        # A version made before login thresholds were rule parameters holds the defaults.
        logins = login_thresholds.from_parameters(row.parameters.get("logins"))
        return _view(session, row, rt.clock()), {
            **row.parameters, "logins": login_thresholds.parameters_of(logins)}


def _get(session: Session, version: int) -> RuleSet:
    row = session.get(RuleSet, version)
    if row is None:
        raise InputError(f"no rule set v{version}; `polysec rules list` shows them")
    return row


def _request_status(session: Session, row: RuleSet, now: datetime) -> str | None:
    if row.request_id is None:
        return None
    request = session.get(ApprovalRequest, row.request_id)
    if request is None:
        return None
    if request.status == "pending" and request.expires_at <= now:
        return "expired"
    return request.status


def _view(session: Session, row: RuleSet, now: datetime) -> RuleSetView:
    live = session.scalar(select(func.max(RuleSet.id)).where(RuleSet.activated_at.is_not(None)))
    if row.activated_at is not None:
        status = "in force" if row.id == live else "superseded"
    else:
        request = _request_status(session, row, now)
        status = "proposed" if request == "pending" else request or "?"
    names = dict(session.execute(select(Officer.id, Officer.name).where(Officer.id.in_(
        [i for i in (row.proposed_by, row.backtested_by, row.activated_by) if i]))).all())
    return RuleSetView(
        row.id, status, row.based_on, row.reason, names.get(row.proposed_by, "?"),
        row.proposed_at, dict(row.changes),
        str(row.request_id) if row.request_id else None, row.backtested_at,
        names.get(row.backtested_by) if row.backtested_by else None, row.backtest,
        row.activated_at, names.get(row.activated_by) if row.activated_by else None,
        int(row.shadow_judged), dict(row.parameters))


# ------------------------------------------------------------------------ approval


def _activate(rt: Runtime, session: Session, request: ApprovalRequest,
              actor: Actor) -> dict[str, Any]:
    """The approved proposal becomes the version in force, if it still may."""
    version = int(request.payload["rule_set"])
    now = rt.clock()
    # One activation at a time: two approvals must not both find the same base in force.
    locks.take(session, locks.RULE_SETS, now)
    row = session.scalars(select(RuleSet).where(RuleSet.id == version)
                          .with_for_update()).one()
    # A locking read: on MariaDB a plain one would read the snapshot this transaction
    # took before the lock (the request's own rows were read first), and miss a version
    # another approval made live meanwhile.
    latest = session.execute(
        select(RuleSet.id, RuleSet.parameters).where(RuleSet.activated_at.is_not(None))
        .order_by(RuleSet.id.desc()).limit(1).with_for_update()).first()
    base = screening.load_config(rt.settings)
    in_force = base if latest is None else screening.with_rule_set(base, latest.id,
                                                                    latest.parameters)
    logins_in_force = LOGIN_DEFAULTS if latest is None else \
        login_thresholds.from_parameters(latest.parameters.get("logins"))
    live = in_force.rule_set
    if row.based_on != live:
        raise ConflictError(
            f"rule set v{version} was proposed on {_version_name(row.based_on)}, but "
            f"{_version_name(live)} is in force now: deny this request and propose again")
    test = row.backtest
    if test is None or test.get("live_digest") != digest(in_force, logins_in_force):
        raise RefusedError(
            f"rule set v{version} has no backtest against the thresholds in force now "
            f"({_version_name(live)}): run `polysec rules backtest {version}` first")
    if test.get("screening_changed", True) and not test.get("judged"):
        raise RefusedError(f"the backtest of rule set v{version} judged no withdrawal: run "
                           f"it again over a longer period (--since)")
    logins = test.get("logins")
    if logins is not None and (not logins.get("logins")
                               or logins.get("days", 0) < MIN_LOGIN_DAYS):
        raise RefusedError(
            f"the backtest of rule set v{version} replayed {logins.get('logins', 0):,} logins "
            f"over {logins.get('days', 0):g} days: login thresholds need {MIN_LOGIN_DAYS} "
            "days at least; run it again (--since)")
    row.activated_at, row.activated_by = now, actor.officer_id
    rt.audit.append(session, officer=actor.name, action="rules.activate", at=rt.clock(),
                    target=f"rule_set:{version}",
                    details={"replaces": live, "changes": row.changes})
    return {"rule_set": version}


def _describe(payload: dict[str, Any]) -> str:
    return f"rule set v{payload.get('rule_set')}: thresholds and weights"


def _evidence(session: Session, request: ApprovalRequest) -> list[tuple[str, str]]:
    row = session.get(RuleSet, int(request.payload.get("rule_set", 0)))
    if row is None:
        return []
    lines = [("changes", describe_changes(row.changes))]
    test = row.backtest
    if test is None:
        lines.append(("backtest", "none yet: approval is refused until one is run"))
    elif not test.get("screening_changed", True) and not test.get("judged"):
        lines.append(("backtest", "screening's parameters are those in force: no "
                                  "withdrawal judged otherwise"))
    else:
        live, prop = test["live"], test["proposed"]
        scope = ("" if test.get("screening_changed", True) else
                 "screening's parameters are those in force; ")
        which = (" on accounts whose login findings change" if scope else "") + (
            ", each side with its own login findings" if test.get("findings_replayed")
            else "")
        lines.append(("backtest", (
            f"{scope}{test['judged']:,} withdrawals{which} since {test['since'][:10]} against "
            f"{_version_name(test['live_version'])}: holds {live['holds']:,} -> "
            f"{prop['holds']:,} (+{test['added_count']:,} -{test['removed_count']:,}); "
            f"precision {share(live['precision'])} -> {share(prop['precision'])}; "
            f"recall {share(live['recall'])} -> {share(prop['recall'])} "
            f"({test['fraud']:,} confirmed fraud, {test['decided']:,} labelled)")))
    logins = (test or {}).get("logins")
    if test is not None and logins is not None:
        lines.append(("login backtest", (
            f"{logins['logins']:,} logins over {logins.get('days', 0):g} days since "
            f"{test['since'][:10]} against {_version_name(test['live_version'])}: findings "
            f"{logins['findings_live']:,} -> {logins['findings_proposed']:,} "
            f"(+{logins['added_count']:,} -{logins['removed_count']:,}); "
            f"{logins['fraud']:,} alerts confirmed fraud, {logins['decided']:,} labelled")))
        if logins.get("silenced"):
            lines.append(("SILENCED", "no finding at all under the proposal: "
                                      + ", ".join(logins["silenced"])))
        lines.append(("per detector", "; ".join(
            f"{d['detector']} {d['live']['holds']:,} -> {d['proposed']['holds']:,} flagged "
            f"(precision {share(d['live']['precision'])} -> "
            f"{share(d['proposed']['precision'])}, recall {share(d['live']['recall'])} -> "
            f"{share(d['proposed']['recall'])})" for d in logins["detectors"]) or "none"))
        if logins.get("withdrawals_affected"):
            lines.append(("screening", (
                f"{logins['withdrawals_affected']:,} withdrawals of the period are on "
                "accounts whose login findings change (risky_session, recent_anomalies "
                "and a login's vouching read them): "
                + ("judged again with each side's findings, in the backtest's holds"
                   if test.get("findings_replayed") else "not replayed"))))
    disagreed = session.scalar(select(func.count()).select_from(RuleSetShadow)
                               .where(RuleSetShadow.rule_set_id == row.id)) or 0
    lines.append(("shadow", f"{int(row.shadow_judged):,} new withdrawals judged, "
                            f"{int(disagreed):,} disagreements"))
    if row.shadow_logins is not None:
        added, removed, changed = _login_disagreements(session, row.id)
        lines.append(("login shadow", f"{int(row.shadow_logins):,} new logins judged: "
                      + describe_findings(added, removed, changed)))
    return lines


def describe_findings(added: dict[str, int], removed: dict[str, int],
                      changed: dict[str, int]) -> str:
    """``brute_force +3 -1; impossible_travel 2 at another severity``, or that none
    differ."""
    parts = [f"{kind} " + " ".join(
        f"{sign}{n:,}" for sign, n in (("+", added.get(kind, 0)), ("-", removed.get(kind, 0)))
        if n) for kind in sorted(added.keys() | removed.keys())]
    parts += [f"{kind} {n:,} at another severity" for kind, n in changed.items()]
    return "; ".join(parts) if parts else "the same findings as the thresholds in force"


def describe_changes(changes: dict[str, list[Any]]) -> str:
    """``hold_threshold 50 -> 35; weights.velocity 25 -> 30``."""
    return "; ".join(f"{k} {plain(a)} -> {plain(b)}" for k, (a, b) in changes.items())


def plain(value: Any) -> str:
    """A parameter's value as an officer writes it: 50, not 50.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items())
    return "none" if value is None else str(value)


def share(value: float | None) -> str:
    """A precision or recall: 67%, or n/a where nothing counts."""
    return "n/a" if value is None else f"{value:.0%}"


APPROVAL = approvals.ApprovalKind(
    name=KIND, min_role="senior", execute=_activate, describe=_describe,
    requester_permission="rules.propose", ttl=REQUEST_TTL, evidence=_evidence,
)
