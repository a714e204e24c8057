"""Credential stuffing and password spraying spread over many sources (issue 21, item 4).

A campaign through a residential proxy pool sends one or two attempts from each address,
each from another home network: no source ever reaches the per-source thresholds of
`credential_stuffing` or `password_spraying`. What gives it away is the platform as a
whole: far more failed logins in an hour than its usual hour, on many accounts, nearly
all from addresses that tried only once or twice.

Judged over sliding hours: an hour starting at every 10 minutes (``SLOT``), once it is
complete (``campaign_lateness`` past its end, by the newest login and by the clock),
from the failed logins of that hour against the median of the 168 hours before it
(those after the platform's first login; with fewer than 24, nothing is judged: a new
deployment knows no usual hour, and every address is new to its account). A
campaign of 150 attempts from 14:30 to 15:30 is one hour of 150, not two clock hours of
75 that each stay under the minimum; and it is seen 10 minutes after such an hour ends,
not after the clock hour. The start of the next hour to judge (in slots since the epoch)
is kept in the ``campaigns`` row of ``analysis_checkpoints``, in the transaction that
stores the findings; a failed login delivered after its hours were judged has them
judged again (findings are unique), so the watcher's passes, a batch run and a full run
find the same, except where a late login changes a later hour's baseline. Only failures
from an address the account never logged in from count as spread: a client's own
failures (an outage, a TOTP clock drift, a forced reset) come from addresses it used.
A login in several such hours is explained by the busiest of them (in its run).

Findings (kind ``distributed_attack``): each failed login of the hour from such an
address (medium: a campaign's target is not an alert by itself). When most of those
attempts share a few user agents (the campaign's tooling), only attempts with them are
tagged. A successful login of the hour from a network its account never logged in from
successfully before is critical (a stolen password that worked) when it carries one of
those user agents, or when it comes from one of the campaign's addresses (one that
failed on an account that hour): a tool that rotates user agents still reuses its
proxies. A success from an address the campaign used for nothing else is not seen.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select, true, update
from sqlalchemy.orm import Session, aliased

from polysec_tui.db.models import AnalysisCheckpoint, LoginEvent
from polysec_tui.services.logins.rules import Finding, Thresholds, flag

KIND = "distributed_attack"
CHECKPOINT = "campaigns"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SLOT = timedelta(minutes=10)  # a judged hour starts at every slot
PER_HOUR = HOUR // SLOT
CHUNK = 500
# A campaign's signature: at most this many user agents, shared by this share of its
# spread attempts.
SIGNATURE_AGENTS = 3
SIGNATURE_SHARE = 0.5
SIGNATURE_MIN_SHARE = 0.1  # of the spread attempts, for each of those user agents


def _slot(at: datetime) -> int:
    return int((at - EPOCH) // SLOT)


def _start(slot: int) -> datetime:
    return EPOCH + slot * SLOT


def judge(session: Session, lo: int, hi: int, full: bool, now: datetime, t: Thresholds,
          findings: dict[tuple[str, int], Finding]) -> None:
    """Judge the hours completed by the logins ``lo < id <= hi`` (every hour with
    ``full``), and again the earlier hours their late failed logins belong to; move the
    checkpoint past the completed ones."""
    e = LoginEvent
    in_run = (e.id > lo, e.id <= hi)
    # The platform's first login (one seek on the time index): the usual hour is that
    # of the hours after it.
    origin = session.scalar(select(e.at).order_by(e.at).limit(1))
    if full:
        newest = session.scalar(select(e.at).order_by(e.at.desc()).limit(1))
        earliest = origin
    else:  # an increment aggregates its id range
        newest, earliest = session.execute(
            select(func.max(e.at), func.min(e.at)).where(*in_run)).one()
    if newest is None or earliest is None or origin is None:
        return
    row = session.get(AnalysisCheckpoint, CHECKPOINT)
    if row is None:
        row = AnalysisCheckpoint(name=CHECKPOINT, login_id=0, security_event_id=0, runs=0,
                                 updated_at=now)
        session.add(row)
        session.flush()
    # An hour is named by its first slot; a full run starts with the hours that end in
    # the first logins' slot.
    first = (_slot(earliest) - PER_HOUR + 1 if full or not row.login_id
             else int(row.login_id))
    # Complete: ``campaign_lateness`` past its end, by the logins and by the clock (one
    # login dated in the future must not close hours still to come).
    last = max(first, _slot(min(newest, now) - t.campaign_lateness) - PER_HOUR + 1)
    # Hours judged before whose logins arrived late, in this run: again (a late failure
    # may make one a campaign, a late success may be its stolen password).
    late: set[int] = set()
    if not full:
        for at in session.scalars(select(e.at).where(
                *in_run, e.at < _start(first + PER_HOUR - 1))):
            slot = _slot(at)
            late.update(range(slot - PER_HOUR + 1, min(slot, first - 1) + 1))
    hours = sorted(late | set(range(first, last)))
    if hours:
        since = _start(hours[0] - t.campaign_baseline_hours * PER_HOUR)
        by_slot: dict[int, list[Any]] = defaultdict(list)
        for failed in session.execute(
                select(e.id, e.account_id, e.at, e.ip, e.asn, e.user_agent)
                .where(e.success == false(), e.at >= since,
                       e.at < _start(max(last, hours[-1] + 1) + PER_HOUR - 1))):
            by_slot[_slot(failed.at)].append(failed)
        judging = _Judging(session, t, by_slot, _slot(origin))
        campaigns = [c for c in map(judging.campaign, hours) if c is not None]
        # A login in several of them: the busiest explains it.
        for campaign in sorted(campaigns, key=lambda c: (-c.failed, c.start)):
            campaign.flag(findings)
    session.execute(update(AnalysisCheckpoint).where(AnalysisCheckpoint.name == CHECKPOINT)
                    .values(login_id=last, updated_at=now))


@dataclass
class _Campaign:
    """An hour judged a campaign: what to flag, and the sentence that explains it."""

    start: int
    failed: int
    what: str
    details: dict[str, Any]
    spread: list[Any]
    successes: list[tuple[Any, str]]

    def flag(self, findings: dict[tuple[str, int], Finding]) -> None:
        for f in self.spread:
            flag(findings, Finding(KIND, "medium", float(self.failed), f.account_id, f.id,
                                   f.at, f.ip, f.asn, f"one of {self.what}", self.details))
        for s, how in self.successes:
            flag(findings, Finding(
                KIND, "critical", float(self.failed), s.account_id, s.id, s.at, s.ip, s.asn,
                f"a successful login from {s.ip}, on a network this account never logged "
                f"in from successfully, {how}: {self.what}", self.details))


class _Judging:
    """One run's hours: the failed logins by slot, and what it reads once for all of
    them (overlapping hours share most of their accounts, addresses and slots)."""

    def __init__(self, session: Session, t: Thresholds, by_slot: dict[int, list[Any]],
                 origin: int) -> None:
        self.session = session
        self.t = t
        self.by_slot = by_slot
        self.origin = origin  # the slot of the platform's first login
        self.hour_counts: dict[int, int] = {}
        # account -> address -> its first successful login from there
        self.first_success: dict[uuid.UUID, dict[str, datetime]] = {}
        self.slot_successes: dict[int, list[Any]] = {}

    def failed_in(self, start: int) -> int:
        """How many failed logins the hour starting at slot ``start`` holds."""
        count = self.hour_counts.get(start)
        if count is None:
            count = sum(len(self.by_slot.get(slot, ())) for slot in
                        range(start, start + PER_HOUR))
            self.hour_counts[start] = count
        return count

    def campaign(self, start: int) -> _Campaign | None:
        """The hour starting at slot ``start``, if it is a campaign."""
        t = self.t
        if self.failed_in(start) < t.campaign_min_failures:
            return None
        # The usual hour: the median of the hours before it, each a whole hour apart,
        # that the platform's logins cover. Without a day of them, nothing is known.
        history = range(max(start - t.campaign_baseline_hours * PER_HOUR,
                            start - (start - self.origin) // PER_HOUR * PER_HOUR),
                        start, PER_HOUR)
        if len(history) < t.campaign_min_history_hours:
            return None
        usual = statistics.median(map(self.failed_in, history))
        if self.failed_in(start) < t.campaign_ratio * usual:
            return None
        failed = [f for slot in range(start, start + PER_HOUR)
                  for f in self.by_slot.get(slot, ())]
        # Spread: from an address that tried too few times for the per-source detectors,
        # and that its account never logged in from (a client's own failures come from
        # home: an outage, a TOTP clock drift or a forced reset is not a campaign).
        per_source = Counter(f.ip for f in failed)
        few = [f for f in failed if per_source[f.ip] <= t.campaign_max_per_source]
        known = self._known_addresses(few)
        spread = [f for f in few if f.id not in known]
        targets = {f.account_id for f in failed}
        if (len(targets) < t.campaign_min_accounts
                or len(spread) < t.campaign_share * len(failed)):
            return None
        # The campaign's tooling: user agents that most of the spread attempts share.
        # When there is one, the client's own typo in that hour (another browser) is not
        # tagged, and a success with it from an address new to the account is the
        # stolen password that worked.
        agents = Counter(f.user_agent for f in spread if f.user_agent)
        signature: set[str] = set()
        covered = 0
        for agent, n in agents.most_common(SIGNATURE_AGENTS):
            if n >= SIGNATURE_MIN_SHARE * len(spread):  # not a stray client's browser
                signature.add(agent)
                covered += n
        if covered < SIGNATURE_SHARE * len(spread):
            signature = set()
        if signature:
            spread = [f for f in spread if f.user_agent in signature]
        sources = len({f.ip for f in spread})
        networks = len({f.asn for f in spread if f.asn is not None})
        began, ended = _start(start), _start(start + PER_HOUR)
        what = (f"{len(failed):,} failed logins between {began:%Y-%m-%d %H:%M} and "
                f"{ended:%H:%M} UTC on {len(targets):,} accounts, "
                f"{len(spread):,} of them from {sources:,} addresses that tried at most "
                f"{t.campaign_max_per_source} times each ({networks:,} networks): the "
                f"platform's usual hour has {usual:g} (median of the "
                f"{t.campaign_baseline_hours} hours before)")
        details = {"failed": len(failed), "accounts": len(targets), "spread": len(spread),
                   "sources": sources, "networks": networks, "usual_hour": usual,
                   "hour": began.isoformat()}
        # The stolen passwords that worked: a success of the hour, from a network its
        # account never logged in from, with the campaign's user agent, or from one of
        # the campaign's own addresses (it failed on another account that hour: a tool
        # that rotates user agents still reuses its proxies).
        targets_of: dict[str, set[uuid.UUID]] = defaultdict(set)
        for f in spread:
            targets_of[f.ip].add(f.account_id)
        successes = self._new_network_successes(start, signature, targets_of)
        return _Campaign(start, len(failed), what, details, spread, successes)

    def _known_addresses(self, failed: list[Any]) -> set[int]:
        """Of ``failed``, the ids of those from an address their account had logged in
        from successfully before them (before: so that a later success does not change
        what a run decided, and increments find what a full run finds)."""
        e = LoginEvent
        missing = sorted({f.account_id for f in failed} - self.first_success.keys(), key=str)
        for i in range(0, len(missing), CHUNK):
            chunk = missing[i:i + CHUNK]
            for account in chunk:
                self.first_success[account] = {}
            for a, ip, at in self.session.execute(
                    select(e.account_id, e.ip, func.min(e.at))
                    .where(e.account_id.in_(chunk), e.success == true())
                    .group_by(e.account_id, e.ip)):
                self.first_success[a][ip] = at
        return {f.id for f in failed
                if (seen := self.first_success[f.account_id].get(f.ip)) is not None
                and seen < f.at}

    def _new_network_successes(self, start: int, signature: set[str],
                               targets_of: dict[str, set[uuid.UUID]]
                               ) -> list[tuple[Any, str]]:
        """The successful logins of the hour with one of the campaign's user agents, or
        from one of its addresses that failed on another account (``targets_of``: the
        accounts each address failed on) with a device new to the account, each from a
        network (ASN; the address without one) its account had not logged in from
        successfully before (a new address on the client's own carrier is not enough),
        with how they belong to the campaign."""
        found: dict[int, tuple[Any, str]] = {}
        for slot in range(start, start + PER_HOUR):
            for s in self._successes_in(slot):
                if s.user_agent in signature:
                    found[s.id] = (s, "with the user agent of the campaign on the platform")
                # By address, only a device the account never logged in with (or none):
                # a carrier's shared address carries the campaign's proxies and genuine
                # subscribers alike; and not the client's own typo, then their success,
                # from a new network.
                elif (s.ip in targets_of and not s.device_known
                      and not targets_of[s.ip] <= {s.account_id}):
                    found[s.id] = (s, "from an address that failed on other accounts in "
                                      "the campaign's hour")
        return [found[k] for k in sorted(found)]

    def _successes_in(self, slot: int) -> list[Any]:
        """The slot's successful logins from a network their account had not logged in
        from successfully before, each with whether its device had."""
        if slot not in self.slot_successes:
            now, before = (aliased(LoginEvent, name="now"),
                           aliased(LoginEvent, name="before"))
            earlier = (before.account_id == now.account_id, before.success == true(),
                       before.at < now.at)
            known = select(before.id).where(
                *earlier, or_(and_(now.asn.is_not(None), before.asn == now.asn),
                              and_(now.asn.is_(None), before.ip == now.ip))).exists()
            device_known = select(before.id).where(
                *earlier, before.device_id == now.device_id).exists()
            self.slot_successes[slot] = list(self.session.execute(
                select(now.id, now.account_id, now.at, now.ip, now.asn, now.user_agent,
                       device_known.label("device_known"))
                .where(now.success == true(), now.at >= _start(slot),
                       now.at < _start(slot + 1), ~known)))
        return self.slot_successes[slot]
