"""Triage of risk events: sorts, filters, bulk decisions and the figures monitoring reads.

Orders
------
``sort`` names one key, with a leading ``-`` for descending; every order ends with the
event id in the same direction, so pages never overlap or skip an event.

``priority``
    ``score x value_moved``: the expected value at risk, the review queue's default
    (``-priority``, highest first). Events that moved no value (or whose value moved is
    unknown) have priority 0 and come after every event that did, highest score first.
    Ties go to the higher score, then the newer id.
``score``, ``value_moved``, ``created_at`` (recorded), ``window_end`` (the evidence's
latest trade), ``account_id``, ``counterparty``, ``id``
    As named. An unknown value moved or counterparty (NULL) sorts where the database
    puts NULL, so that the order is read from an index: as the smallest value on SQLite
    and MySQL/MariaDB, as the largest on PostgreSQL. Only events recorded before value
    moved was measured lack one; every event lacks a counterparty until one is found.

Every order is served by an index (migrations 0005 and 0007) for the open queue, and
priority, value moved and newest first also across statuses, so the first page of
100,000 events is read without sorting them (``bench/desk.py`` measures it).

Pages by key
------------
:meth:`~fraudlens.store.Store.risk_events_after` reads the same order a page at a time
from where the last page ended (:func:`after_condition`: the events after the last one's
sort values, NULL where the database puts it), not by offset: a page deep in the order
costs what the first does, and an event recorded, decided or dropped from the filter
while the pages are read moves no later page (an export of the list, which may run to a
million events, neither repeats nor skips one for it).

Account prefix search
---------------------
``account_prefix`` matches account ids that begin with the given text, as
``LIKE 'text%'`` with ``%``, ``_`` and the escape character escaped, so they match only
themselves. The index on ``account_id`` serves it: on PostgreSQL it is built with
``varchar_pattern_ops`` (any collation), MySQL/MariaDB use a prefix LIKE directly, and on
SQLite (whose LIKE ignores ASCII case and so cannot use a case-sensitive index) the LIKE
comes with the equivalent range ``prefix <= account_id < next(prefix)``. Matching is
case-sensitive on SQLite and PostgreSQL and follows the column's collation on
MySQL/MariaDB (case-insensitive by default), as exact account ids do there.

Assignee filter
---------------
``assignee`` keeps the events assigned to one user, ``unassigned`` those assigned to
nobody (``assignee IS NULL``). With ``status`` and the default order both are read from
``(status, assignee, priority, score, id)`` (migration 0010) without sorting, on every
database; other orders with an assignee filter sort that assignee's events.

Symbol filter
-------------
``symbol`` keeps the events whose evidence trades the symbol (``risk_event_symbols``).
On SQLite and PostgreSQL it is a semi-join (``id IN (SELECT event_id ...)``). On
MySQL/MariaDB it is a join read in the events' order (``STRAIGHT_JOIN``, see
:func:`events_source`): there the semi-join starts from the symbol's rows and looks up
every matching event's whole row, details included, before it sorts them; once the
events outgrow InnoDB's buffer pool (100,000 events are about 300 MB, the pool 128 MB by
default) those reads come from disk, 0.7 s for the first page of 5,000 matches.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fraudlens._time import utc
from fraudlens.errors import DataError, FraudlensError, NotFoundError
from fraudlens.store._auth import _mapped, append_review_audit
from fraudlens.store._tables import RiskEventRow, RiskEventSymbol

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = [
    "DEFAULT_SORT",
    "MAX_BULK",
    "SORT_KEYS",
    "AssignedElsewhereError",
    "TriageStore",
    "after_condition",
    "decision_values",
    "event_priority",
    "event_symbols",
    "events_source",
    "like_prefix",
    "order_by",
    "sort_columns",
]

#: Keys ``sort`` accepts (each also with a leading ``-`` for descending).
SORT_KEYS = (
    "priority",
    "score",
    "value_moved",
    "created_at",
    "window_end",
    "account_id",
    "counterparty",
    "id",
)
#: The review queue's default order.
DEFAULT_SORT = "-priority"
#: Most events one bulk decision may name.
MAX_BULK = 500
#: Events written before SQLite's planner statistics are refreshed (at least).
_STATS_MIN_ROWS = 1000

log = logging.getLogger("fraudlens.store")

#: Escape character of prefix patterns (portable: no backslash quoting differences).
_ESCAPE = "/"


def event_priority(score: float, value_moved: float | None) -> float:
    """The triage priority of an event: ``score x value_moved`` (0 when unknown).

    Parameters
    ----------
    score
        The model's score, 0..1.
    value_moved
        Value the account's matched round trips moved (quote currency), or None.
    """
    if value_moved is None:
        return 0.0
    return float(score) * max(float(value_moved), 0.0)


def event_symbols(details: Mapping[str, Any] | str | None) -> list[str]:
    """Symbols of the trades an event's ``details`` lists (sorted, each once)."""
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            return []
    trades = details.get("trades") if isinstance(details, Mapping) else None
    if not isinstance(trades, list):
        return []
    # plain dicts (what the worker writes) skip the Mapping ABC's isinstance check, the
    # larger part of this set's cost (4,000 trades of a batch of 500 events)
    out = {
        symbol
        for t in trades
        if (type(t) is dict or isinstance(t, Mapping))
        and isinstance(symbol := t.get("symbol"), str)
        and 0 < len(symbol) <= 32
    }
    return sorted(out)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with ``prefix`` (escape ``/``)."""
    escaped = prefix.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%")
    return escaped.replace("_", _ESCAPE + "_") + "%"


def _next_prefix(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix`` (code point
    order, SQLite's BINARY collation on UTF-8), or None when there is none."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded: skip them
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


def prefix_condition(prefix: str, dialect: str) -> Any:
    """The WHERE condition of an account prefix search (see the module docstring)."""
    col = RiskEventRow.account_id
    cond: Any = col.like(like_prefix(prefix), escape=_ESCAPE)
    if dialect == "sqlite":
        upper = _next_prefix(prefix)
        bounds = [col >= prefix] + ([col < upper] if upper is not None else [])
        cond = sa.and_(*bounds, cond)
    return cond


def sort_columns(sort: str) -> list[Any]:
    """The columns a ``sort`` value orders by, the event id last (see the module
    docstring).

    Raises
    ------
    DataError
        An unknown key.
    """
    desc = sort.startswith("-")
    key = sort[1:] if desc else sort
    if key not in SORT_KEYS:
        raise DataError(
            f"cannot sort by {sort!r}: use one of {', '.join(SORT_KEYS)}, "
            "with a leading '-' for descending",
            column="sort",
        )
    cols = [getattr(RiskEventRow, key)]
    if key == "priority":
        cols.append(RiskEventRow.score)
    if key != "id":
        cols.append(RiskEventRow.id)
    return cols


def order_by(sort: str, dialect: str) -> list[Any]:
    """ORDER BY clauses of a ``sort`` value (see the module docstring).

    Raises
    ------
    DataError
        An unknown key.
    """
    desc = sort.startswith("-")
    # NULL where the database puts it (see the module docstring): forcing one place would
    # cost PostgreSQL (or the others) its index for these orders
    return [col.desc() if desc else col.asc() for col in sort_columns(sort)]


def after_condition(sort: str, dialect: str, after: Sequence[Any]) -> Any:
    """The WHERE condition of the events that come after ``after`` in ``sort`` order:
    ``after`` holds the values of :func:`sort_columns` of one event (as read from the
    store), and the condition keeps exactly the events :func:`order_by` puts after it.

    Lexicographic over the columns, with NULL (an unknown value moved or counterparty)
    where the database sorts it: the smallest value on SQLite and MySQL/MariaDB, the
    largest on PostgreSQL. The first column is also bounded on its own (``key >=
    value``, or ``<=`` descending), so that the database starts reading the order's index
    at the event instead of at its head.
    """
    desc = sort.startswith("-")
    cols = sort_columns(sort)
    if len(after) != len(cols):
        raise DataError(
            f"a position in {sort!r} order has {len(cols)} values, not {len(after)}",
            column="after",
        )
    null_smallest = dialect != "postgresql"
    # NULL comes first in this direction (ascending with NULL smallest, or descending
    # with NULL largest)
    nulls_first = null_smallest != desc

    def equal(col: Any, value: Any) -> Any:
        return col.is_(None) if value is None else col == value

    def beyond(col: Any, value: Any) -> Any:
        if value is None:
            # after a NULL come the values, if NULLs come first; else nothing
            return col.is_not(None) if nulls_first else sa.false()
        cond = col < value if desc else col > value
        if col.nullable and not nulls_first:
            cond = sa.or_(cond, col.is_(None))
        return cond

    terms = []
    for i, (col, value) in enumerate(zip(cols, after, strict=True)):
        same = [equal(c, v) for c, v in zip(cols[:i], after[:i], strict=True)]
        terms.append(sa.and_(*same, beyond(col, value)))
    cond: Any = sa.or_(*terms)
    head, first = cols[0], after[0]
    if first is not None and (nulls_first or not head.nullable):
        cond = sa.and_(head <= first if desc else head >= first, cond)
    return cond


def filter_conditions(
    dialect: str,
    *,
    account_prefix: str | None = None,
    symbol: str | None = None,
    counterparty: str | None = None,
    min_value_moved: float | None = None,
    assignee: str | None = None,
    unassigned: bool = False,
) -> list[Any]:
    """WHERE conditions of the triage filters beyond the plain column matches.

    ``assignee`` keeps the events assigned to that user, ``unassigned`` those assigned
    to nobody; both at once is a DataError."""
    conds: list[Any] = []
    if assignee is not None and unassigned:
        raise DataError("assignee and unassigned exclude each other: give one", column="assignee")
    if assignee is not None:
        conds.append(RiskEventRow.assignee == assignee)
    if unassigned:
        conds.append(RiskEventRow.assignee.is_(None))
    if account_prefix:
        conds.append(prefix_condition(account_prefix, dialect))
    if symbol is not None:
        conds.append(
            RiskEventRow.id.in_(
                sa.select(RiskEventSymbol.event_id).where(RiskEventSymbol.symbol == symbol)
            )
        )
    if counterparty is not None:
        conds.append(RiskEventRow.counterparty == counterparty)
    if min_value_moved is not None:
        conds.append(RiskEventRow.value_moved >= float(min_value_moved))
    return conds


_EVENTS = RiskEventRow.__table__
_SYMBOLS = RiskEventSymbol.__table__


def events_source(dialect: str, symbol: str | None) -> tuple[Any, bool]:
    """What a triage query reads (the FROM clause), and whether it keeps its join order.

    On MySQL/MariaDB a ``symbol`` filter joins ``risk_event_symbols`` on its primary key
    (event, symbol), so every event appears at most once, and the query must be run as
    ``STRAIGHT_JOIN`` (the second value ``True``): the events are then read from the
    index that serves the filters and the order, and each one's symbol row is looked up
    by key, instead of reading the whole row of every event of the symbol (see the
    module docstring). :func:`filter_conditions` is then called without ``symbol``.
    Elsewhere the events table alone (the symbol is a semi-join condition).
    """
    if dialect != "mysql" or symbol is None:
        return _EVENTS, False
    on = sa.and_(_SYMBOLS.c.event_id == _EVENTS.c.id, _SYMBOLS.c.symbol == symbol)
    return _EVENTS.join(_SYMBOLS, on), True


def decision_values(status: str, reviewed_by: str, note: str | None) -> dict[str, Any]:
    """The columns an analyst's decision sets on an event, checked.

    Raises
    ------
    DataError
        ``status`` is not a risk-event status, or ``reviewed_by`` is empty.
    """
    from fraudlens._time import utcnow
    from fraudlens.store.records import RISK_STATUSES

    if status not in RISK_STATUSES:
        raise DataError(f"status {status!r} is not one of {RISK_STATUSES}", column="status")
    if not reviewed_by or not reviewed_by.strip():
        raise DataError("reviewed_by must not be empty", column="reviewed_by")
    values: dict[str, Any] = {
        "status": status,
        "reviewed_by": reviewed_by.strip(),
        "reviewed_at": utcnow(),
    }
    if note is not None:
        values["note"] = note
    return values


class AssignedElsewhereError(FraudlensError):
    """An assignment would take events another user holds, and was not forced.

    Attributes
    ----------
    holders
        Event id -> the user who holds it.
    """

    def __init__(self, holders: Mapping[int, str]) -> None:
        self.holders = dict(holders)
        shown = "; ".join(f"#{i} to {who}" for i, who in sorted(self.holders.items())[:20])
        more = " ..." if len(self.holders) > 20 else ""
        super().__init__(
            f"assigned to another user: {shown}{more}. Send force: true to take "
            f"{'it' if len(self.holders) == 1 else 'them'} (nothing was changed)"
        )


def _checked_ids(event_ids: Sequence[int], what: str) -> list[int]:
    ids = [int(i) for i in event_ids]
    if not ids:
        raise DataError("no event ids given", column="ids")
    if len(ids) > MAX_BULK:
        raise DataError(f"at most {MAX_BULK} events per {what}, not {len(ids)}", column="ids")
    if len(set(ids)) != len(ids):
        raise DataError("an event id is given twice", column="ids")
    return ids


def _not_found(missing: Sequence[int]) -> NotFoundError:
    shown = ", ".join(str(i) for i in missing[:20])
    return NotFoundError(f"no risk event with id {shown}" + (" ..." if len(missing) > 20 else ""))


class TriageStore:
    """Bulk decisions and monitoring figures; mixed into :class:`fraudlens.store.Store`."""

    dialect: str

    def _connect(self) -> AbstractContextManager[sa.Connection]:  # pragma: no cover
        raise NotImplementedError

    def _begin(self) -> AbstractContextManager[sa.Connection]:  # pragma: no cover
        raise NotImplementedError

    def _review_in(
        self,
        conn: sa.Connection,
        event_id: int,
        values: Mapping[str, Any],
        *,
        user_id: int | None,
    ) -> None:
        """Record one decision (``values`` from :func:`decision_values`) inside ``conn``'s
        transaction: its audit row first, then the event's own columns."""
        appended = append_review_audit(
            conn,
            event_id,
            actor=values["reviewed_by"],
            user_id=user_id,
            to_status=values["status"],
            note=values.get("note"),
            at=values["reviewed_at"],
        )
        if appended == 0:
            raise NotFoundError(f"no risk event with id {event_id}")
        result = conn.execute(
            sa.update(RiskEventRow).where(RiskEventRow.id == int(event_id)).values(**values)
        )
        if result.rowcount == 0:
            raise NotFoundError(f"no risk event with id {event_id}")

    @_mapped
    def review_risk_events(
        self,
        event_ids: Sequence[int],
        *,
        status: str,
        reviewed_by: str,
        note: str | None = None,
        user_id: int | None = None,
    ) -> list[int]:
        """Record one decision on several events, all or none, each in the audit trail.

        Parameters
        ----------
        event_ids
            The events (each once; at most :data:`MAX_BULK`).
        status, reviewed_by, note, user_id
            As in :meth:`fraudlens.store.Store.review_risk_event`; the note replaces each
            event's note when given.

        Returns
        -------
        list of int
            The ids decided, in the order given.

        Raises
        ------
        NotFoundError
            Some id names no event (nothing is changed; the message lists them).
        DataError
            Bad status, reviewer, or list of ids.
        """
        values = decision_values(status, reviewed_by, note)
        ids = _checked_ids(event_ids, "decision")
        with self._begin() as conn:
            found = {
                int(r[0])
                for chunk in _chunked(ids, 500)
                for r in conn.execute(sa.select(RiskEventRow.id).where(RiskEventRow.id.in_(chunk)))
            }
            missing = [i for i in ids if i not in found]
            if missing:
                raise _not_found(missing)
            # in id order: two bulk decisions over overlapping events lock them in the
            # same order, so they queue behind each other instead of deadlocking
            for event_id in sorted(ids):
                self._review_in(conn, event_id, values, user_id=user_id)
        return ids

    @_mapped
    def assign_risk_events(
        self,
        event_ids: Sequence[int],
        assignee: str | None,
        *,
        actor: str,
        user_id: int | None = None,
        note: str | None = None,
        force: bool = False,
    ) -> list[int]:
        """Assign several events to a user (``assignee``), or to nobody (None): all or
        none, each change in the event's history.

        An event held by a user who is neither ``actor`` nor ``assignee`` is taken only
        with ``force``; without it nothing changes and :class:`AssignedElsewhereError`
        names the holders. An event already assigned to ``assignee`` is left as it is
        (no history entry). Each change appends a ``review_audit`` row with ``action``
        ``assign``, the status unchanged (``from_status`` = ``to_status``), the previous
        and the new assignee and ``note``; a review decision later keeps the assignee.

        The events are read under a lock before anything is written (``SELECT ... FOR
        UPDATE`` on PostgreSQL and MySQL; on SQLite an UPDATE that changes nothing first
        takes the database's write lock), so two analysts taking the same event at once
        are served one after the other and the second sees the first's assignment.

        Parameters
        ----------
        event_ids
            The events (each once; at most :data:`MAX_BULK`).
        assignee
            A user's name (an analyst or admin, not disabled), or None to unassign.
        actor, user_id
            Who assigns (recorded in the history), and their user id when signed in.
        note
            Recorded in each history entry (the events' own notes are left alone).
        force
            Take events another user holds.

        Returns
        -------
        list of int
            The events whose assignee changed, in the order given.

        Raises
        ------
        NotFoundError
            Some id names no event (nothing is changed).
        DataError
            ``assignee`` names no user, a disabled one or a service account; a bad actor
            or list of ids.
        AssignedElsewhereError
            Some event is held by another user and ``force`` is false.
        """
        from fraudlens._time import utcnow
        from fraudlens.store._auth import UserRow

        ids = _checked_ids(event_ids, "assignment")
        if not actor or not actor.strip():
            raise DataError("the assigning user's name must not be empty", column="actor")
        actor = actor.strip()
        events = RiskEventRow
        with self._begin() as conn:
            if assignee is not None:
                user = conn.execute(
                    sa.select(UserRow.role, UserRow.disabled).where(UserRow.username == assignee)
                ).first()
                if user is None:
                    raise DataError(f"no user named {assignee!r} to assign", column="assignee")
                if user.disabled:
                    raise DataError(f"user {assignee!r} is disabled", column="assignee")
                if user.role not in ("analyst", "admin"):
                    raise DataError(
                        f"{assignee!r} is a {user.role} account: only analysts and admins "
                        "work risk events",
                        column="assignee",
                    )
            if self.dialect == "sqlite":
                # take the write lock before reading (a no-op write of the first event)
                conn.execute(
                    sa.update(events).where(events.id == min(ids)).values(assignee=events.assignee)
                )
            current: dict[int, tuple[str, str | None]] = {}
            for chunk in _chunked(sorted(ids), 500):
                query = sa.select(events.id, events.status, events.assignee).where(
                    events.id.in_(chunk)
                )
                if self.dialect != "sqlite":
                    query = query.order_by(events.id).with_for_update()
                for row in conn.execute(query):
                    current[int(row[0])] = (str(row[1]), row[2])
            missing = [i for i in ids if i not in current]
            if missing:
                raise _not_found(missing)
            held = {
                i: holder
                for i, (_status, holder) in current.items()
                if holder is not None and holder not in (actor, assignee)
            }
            if held and not force:
                raise AssignedElsewhereError(held)
            now = utcnow()
            changed = [i for i in ids if current[i][1] != assignee]
            for event_id in sorted(changed):
                status, holder = current[event_id]
                append_review_audit(
                    conn,
                    event_id,
                    actor=actor,
                    user_id=user_id,
                    to_status=status,
                    note=note,
                    at=now,
                    action="assign",
                    from_status=status,
                    from_assignee=holder,
                    to_assignee=assignee,
                )
                conn.execute(
                    sa.update(events)
                    .where(events.id == event_id)
                    .values(assignee=assignee, assigned_at=None if assignee is None else now)
                )
        return changed

    # -- planner statistics --------------------------------------------------------------
    def refresh_statistics(self, inserted: int | None = None) -> bool:
        """Keep SQLite's query-planner statistics of the risk events current.

        Without statistics SQLite guesses that every equality matches a few rows, and
        for "open events of one counterparty, by priority" walks the whole open queue in
        priority order instead of looking the counterparty up (half a second instead of
        a millisecond at 100,000 events). PostgreSQL and MySQL gather their own
        (autovacuum, InnoDB); this does nothing there.

        Parameters
        ----------
        inserted
            Events just written. Statistics are refreshed when none exist yet, or once
            the events written since the last refresh reach 1,000 and a fifth of the
            table (PostgreSQL's autoanalyze rule); None refreshes now.

        Returns
        -------
        bool
            Whether ``ANALYZE`` ran. It reads the two tables' indexes whole (a sample
            would see only the NULLs at the head of the counterparty index and misjudge
            it): a fraction of a second at 100,000 events, and since it runs once the
            table has grown by a fifth, its cost per written event stays flat. A failure
            is logged, never raised (the events are already written).
        """
        if self.dialect != "sqlite":
            return False
        state = self.__dict__.setdefault("_stats", {"rows": None, "pending": 0, "lock": None})
        if state["lock"] is None:
            state["lock"] = threading.Lock()
        with state["lock"]:
            if state["rows"] is None:
                # a new process: start from the statistics already in the file, so that a
                # worker's first batch does not pay for an ANALYZE another process did
                state["rows"] = self._analysed_rows()
            if inserted is not None:
                state["pending"] += max(int(inserted), 0)
                due = state["pending"] >= max(_STATS_MIN_ROWS, state["rows"] // 5)
                if state["rows"] and not due:
                    return False
                if not state["pending"]:
                    return False
            try:
                with self._begin() as conn:
                    conn.exec_driver_sql("PRAGMA analysis_limit=0")  # no sampling
                    conn.exec_driver_sql("ANALYZE risk_events")
                    conn.exec_driver_sql("ANALYZE risk_event_symbols")
                    rows = conn.execute(
                        sa.select(sa.func.count()).select_from(RiskEventRow)
                    ).scalar_one()
            except Exception as exc:  # the statistics are an optimisation
                log.warning("could not refresh the query planner's statistics: %s", exc)
                return False
            state["rows"], state["pending"] = int(rows), 0
            return True

    def _analysed_rows(self) -> int:
        """Rows of risk_events when SQLite last analysed it (0: never)."""
        try:
            with self._connect() as conn:
                stat = conn.exec_driver_sql(
                    "SELECT stat FROM sqlite_stat1 WHERE tbl = 'risk_events' LIMIT 1"
                ).scalar_one_or_none()
        except Exception:  # no sqlite_stat1 table: never analysed
            return 0
        try:
            return int(str(stat).split()[0]) if stat else 0
        except ValueError:
            return 0

    # -- monitoring --------------------------------------------------------------------
    def _day(self, col: Any) -> Any:
        if self.dialect == "sqlite":
            return sa.func.date(col)
        return sa.cast(col, sa.Date)

    @_mapped
    def risk_events_per_day(self, *, since: datetime | None = None) -> list[tuple[str, str, int]]:
        """Risk events recorded per UTC day and model version.

        Returns
        -------
        list of (day, model_version, count)
            ``day`` as ``YYYY-MM-DD``, oldest first.
        """
        day = self._day(RiskEventRow.created_at).label("day")
        stmt = sa.select(day, RiskEventRow.model_version, sa.func.count()).group_by(
            day, RiskEventRow.model_version
        )
        if since is not None:
            stmt = stmt.where(RiskEventRow.created_at >= since)
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        return sorted((str(d)[:10], str(m), int(n)) for d, m, n in rows)

    @_mapped
    def reviewed_per_day(self) -> list[tuple[str, str, str, int]]:
        """Decided events (confirmed or dismissed) per UTC day they were recorded, model
        version and status: what reviewed precision is computed from.

        Returns
        -------
        list of (day, model_version, status, count)
        """
        day = self._day(RiskEventRow.created_at).label("day")
        stmt = (
            sa.select(day, RiskEventRow.model_version, RiskEventRow.status, sa.func.count())
            .where(RiskEventRow.status.in_(("confirmed", "dismissed")))
            .group_by(day, RiskEventRow.model_version, RiskEventRow.status)
        )
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        return sorted((str(d)[:10], str(m), str(s), int(n)) for d, m, s, n in rows)

    @_mapped
    def recent_accounts(self, *, hours: float = 24.0) -> tuple[list[str], datetime | None]:
        """Accounts with a trade in the ``hours`` up to the newest stored trade.

        Returns
        -------
        (list of str, datetime or None)
            The account ids, sorted, and the newest trade's time (None: no trades).
        """
        from fraudlens.store._tables import Trade

        with self._connect() as conn:
            latest = conn.execute(sa.select(sa.func.max(Trade.ts))).scalar_one_or_none()
            if latest is None:
                return [], None
            latest = utc(latest)
            rows = conn.execute(
                sa.select(Trade.account_id)
                .where(Trade.ts >= latest - timedelta(hours=hours))
                .distinct()
            ).all()
        return sorted(str(r[0]) for r in rows), latest

    @_mapped
    def risk_event_status_counts(self) -> dict[str, int]:
        """Risk events per status."""
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(RiskEventRow.status, sa.func.count()).group_by(RiskEventRow.status)
            ).all()
        return {str(s): int(n) for s, n in rows}


def _chunked(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def symbol_rows(event_id: int, details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``risk_event_symbols`` for a new event."""
    return [{"event_id": int(event_id), "symbol": s} for s in event_symbols(details)]
