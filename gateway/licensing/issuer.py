"""License numbers for one file (guide 5.1, 5.1a): drawn from the ledger's counters per
series and year, within the partner's daily quota; registered numbers recorded as sent; the
supersessions and cancellations of the file made in its transaction (5.1b).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from itertools import groupby

from gateway.errors import FatalError, TransientError
from gateway.ledger.licenses import LicenseChange, PriorLicense
from gateway.ledger.store import Ledger
from gateway.licensing.results import any_covered, has_error
from gateway.model import PENDING
from gateway.validate.staging import StagedApplication

log = logging.getLogger(__name__)

MAX_SEQUENCE = 999_999
# 80 % of a year's numbers (rounded down): the first number past it raises one alarm (5.1a).
ALARM_SEQUENCE = MAX_SEQUENCE * 8 // 10


REGULAR_SERIES = "A"
LOW_VALUE_SERIES = "L"  # low-value licenses: a sequence of their own (guide 5.1a)

# A file's applications are read this many ahead of their decisions (``LicenseIssuer.ahead``),
# and no more product lines than AHEAD_LINES at once (they are held in memory meanwhile):
# their earlier licenses are read in one query and their license numbers drawn in one block.
# On PostgreSQL each was a round trip per application: prior license, number, "held?"
# (1,000 + 1,188 + 1,188 of them took 2.9 s of a worker's 7.5 s on a 24,000-line batch).
AHEAD_APPS = 100
AHEAD_LINES = 2000


def format_license(year: int, sequence: int, series: str = REGULAR_SERIES) -> str:
    """The series letter (``A``, or ``L`` for a low-value license) + two-digit year of issue +
    six-digit sequence within that year and series: ``A21000001``, ``L21000001``."""
    # zfill, not a format spec (the same text, a sign included): half the time, and it is
    # asked twice a license (``next_number``, ``_check_held``).
    return f"{series}{str(year % 100).zfill(2)}{str(sequence).zfill(6)}"


@dataclass
class LicenseIssuer:
    """Draws license numbers from the ledger's counter for the issue year, within the
    partner's daily quota (guide 5.1a)."""

    ledger: Ledger | None  # None: dry run (check), numbers are PENDING
    issue_date: date
    validity_days: int
    quota: int | None = None  # the partner's max_licenses_per_day; None: no quota
    file_id: str = ""  # the file deciding: the changes it makes are its own (changes report)
    registered: bool = False  # the partner sends Commerce's numbers (guide 5.1a): none minted

    def __post_init__(self) -> None:
        self.year = self.issue_date.year
        # The last sequence drawn per series this year: read when first drawn from a counter
        # saved here (one writer), set by each number issued. Several workers draw from the
        # shared counter, which answers the last itself: one round trip less per file.
        self.lasts: dict[str, int] = {}
        self.issued = 0  # new licenses of this file (PENDING ones of a dry run too)
        # Registered numbers recorded by this file: a second application with one is A106
        # (the first is not in the ledger's licenses before the batch is flushed).
        self.recorded: dict[str, str | None] = {}
        self.drawn: set[str] = set()  # the series this file drew from (saved at the end)
        self.refused = 0  # applications of this file refused for the quota (A109)
        self.changed = 0  # licenses superseded or cancelled by this issuer (``change``)
        self._issued_today: int | None = None
        self._history: dict[str, bool] = {}
        # Looked up ahead (``ahead``): the prior license of (partner, ref), None for none.
        self._priors: dict[tuple[str, str], PriorLicense | None] = {}
        # Sequences in hand per series, in the order they are issued; the numbers among them
        # that a license holds already (skipped, as a registered number may look like ours);
        # the series whose numbers in hand were checked against the ledger since the last
        # look-ahead (``_check_held``); and the last run of sequences drawn, as (first,
        # last): what ``release`` gives back.
        self._free: dict[str, deque[int]] = {}
        self._held: set[str] = set()
        self._checked: set[str] = set()
        self._run: dict[str, tuple[int, int]] = {}

    def within_quota(self, partner_id: str | None) -> bool:
        """Whether one more new license fits the partner's quota for the issue date.

        The licenses issued earlier that day are counted once per file, then this file's are
        added here: a partner's files are processed one at a time (the worker holding the
        partner's lease, on SQLite and PostgreSQL alike), so no other file of this partner
        issues a license meanwhile. Licenses returned again (I201) are no new ones: they
        spend nothing.
        """
        if self.quota is None:
            return True
        if self._issued_today is None:
            self._issued_today = self.ledger.licenses_issued(partner_id, self.issue_date) \
                if self.ledger is not None and partner_id else 0
        return self._issued_today + self.issued < self.quota

    @property
    def last(self) -> int:
        """The last regular (``A``) sequence of the year."""
        if REGULAR_SERIES not in self.lasts:
            self.lasts[REGULAR_SERIES] = \
                self.ledger.last_license_sequence(self.year) if self.ledger else 0
        return self.lasts[REGULAR_SERIES]

    @property
    def running_low(self) -> list[tuple[str, int]]:
        """The series (``A``, ``L``: each a sequence of its own) this file drew a number from
        past 80 % of the year's, with their last sequence (the alarm of guide 5.1a)."""
        return [(series, self.lasts[series]) for series in sorted(self.drawn)
                if self.lasts[series] > ALARM_SEQUENCE]

    @property
    def dry(self) -> bool:
        """Nothing is recorded: ``check`` (or a replay) shows what a run would do."""
        return self.ledger is None or self.ledger.readonly

    def prior_license(self, partner_id: str | None, ref: str | None) -> PriorLicense | None:
        """The license this partner's ref got before, if any (I201 / A104).

        A partner with no license at all (a new partner) needs no lookup per application:
        asked once per file. Licenses issued earlier in the same file are not "before"
        (a ref twice in one file is A105)."""
        if self.ledger is None or not partner_id or not ref:
            return None
        key = (partner_id, ref)
        if key in self._priors:
            return self._priors[key]
        if not self._has_history(partner_id):
            return None
        return self.ledger.prior_license(partner_id, ref)

    def _has_history(self, partner_id: str) -> bool:
        assert self.ledger is not None
        if partner_id not in self._history:
            self._history[partner_id] = self.ledger.has_licenses(partner_id)
        return self._history[partner_id]

    def ahead(self, items: Iterable[StagedApplication],
              partner_id: str | None) -> Iterator[StagedApplication]:
        """``items`` as they come, read up to ``AHEAD_APPS`` ahead: the prior licenses of
        each group are read in one query, and the numbers it may need drawn in one block
        (what is not issued is given back by ``release``). Nothing decided changes: the
        prior license of a ref is what ``prior_license`` would read (no other application
        of the file can change it: a ref twice is A105 for both), and numbers are issued in
        the order drawn."""
        group: list[StagedApplication] = []
        lines = 0
        for item in items:
            group.append(item)
            lines += len(item.lines)
            if len(group) >= AHEAD_APPS or lines >= AHEAD_LINES:
                self._look_ahead(group, partner_id)
                yield from group
                group, lines = [], 0
        if group:
            self._look_ahead(group, partner_id)
            yield from group

    def _look_ahead(self, group: list[StagedApplication], partner_id: str | None) -> None:
        if self.ledger is None:
            return
        # A partner without licenses (asked once a file) has no refs to look up.
        refs = [item.app.ref for item in group if item.app.ref and not item.app.cancel] \
            if partner_id and self._has_history(partner_id) else []
        if partner_id and refs:
            found = self.ledger.prior_licenses(partner_id, refs)
            for ref in refs:
                self._priors[(partner_id, ref)] = found.get(ref)
        if self.dry or self.registered:
            return
        self._checked.clear()  # checked again when this group's first number is issued
        # At most the numbers these applications can take (an upper bound: the quota, a
        # finding of decide's own or a resend may take fewer; the rest is given back).
        wanted: dict[str, int] = {}
        for item in group:
            if self._may_take_number(item, partner_id):
                series = LOW_VALUE_SERIES if item.app.low_value else REGULAR_SERIES
                wanted[series] = wanted.get(series, 0) + 1
        for series, count in sorted(wanted.items()):
            free = self._free.get(series)
            if free is None or len(free) < count:
                self._draw(series, count - len(free or ()))

    def _may_take_number(self, item: StagedApplication, partner_id: str | None) -> bool:
        app = item.app
        if app.cancel or item.exempt or has_error(item.findings) or \
                not any_covered(item.lines):
            return False
        prior = self._priors.get((partner_id or "", app.ref or ""))
        return prior is None or app.corrects is not None

    def sees_history(self, partner_id: str | None) -> bool:
        """Whether the ledger can answer for the partner's licenses (not for a ``check``
        without a partner or without a ledger: the named licenses are taken as valid)."""
        return self.ledger is not None and bool(partner_id)

    def license(self, number: str | None) -> PriorLicense | None:
        """The license of this number, whoever holds it (A106, A107)."""
        if self.ledger is None or not number:
            return None
        return self.ledger.license_by_number(number)

    def held(self, number: str) -> bool:
        """A registered number some license holds already, or one this file recorded."""
        return number in self.recorded or self.license(number) is not None

    @cached_property
    def valid_through(self) -> date:
        # The same for every license of the file: computed once (0.5 us a license).
        return self.issue_date + timedelta(days=self.validity_days)

    def next_number(self, series: str = REGULAR_SERIES) -> str:
        self.issued += 1
        if self.ledger is None or self.ledger.readonly:
            return PENDING
        while True:
            free = self._free.get(series)
            if not free:
                free = self._draw(series, 1)
            if series not in self._checked:
                self._check_held(series, free)
            sequence = free.popleft()
            if sequence > MAX_SEQUENCE:
                raise FatalError(f"License numbers {series} for {self.year} are exhausted "
                                 f"({MAX_SEQUENCE:,} issued).")
            self.lasts[series] = sequence
            self.drawn.add(series)
            number = format_license(self.year, sequence, series)
            # A registered partner's number (guide 5.1a) may look like one of ours (Commerce's
            # format is not known): skipped, so that no number is issued twice.
            if number not in self._held:
                return number

    def _draw(self, series: str, count: int) -> deque[int]:
        """``count`` more sequences of ``series`` in hand, after those in hand already."""
        assert self.ledger is not None
        if self.ledger.concurrent:
            # Several workers: the shared counter row, committed at once (a rollback leaves
            # a gap, never a repeat), a block of numbers per round trip.
            last = self.ledger.next_license_sequence(self.year, series, count)
        else:
            # One writer: counted here and saved with the licenses in one transaction, so
            # a crash and a rerun draw the same numbers.
            if series not in self.lasts:
                self.lasts[series] = self.ledger.last_license_sequence(self.year, series)
            last = self._run.get(series, (0, self.lasts[series]))[1] + count
        first = last - count + 1
        run = self._run.get(series)
        # Runs drawn one after the other are one (one drawer: always), given back as one.
        self._run[series] = (run[0] if run and run[1] + 1 == first else first, last)
        free = self._free.setdefault(series, deque())
        free.extend(range(first, last + 1))
        self._checked.discard(series)
        return free

    def _check_held(self, series: str, free: deque[int]) -> None:
        """Which of the numbers in hand a license holds, asked when the first of a group's
        numbers is issued rather than when they were drawn: a partner that registers its own
        numbers (guide 5.1a) may have recorded one of them meanwhile, on another worker, and
        issuing it would fail the file on the licenses' primary key. One range scan per run
        of consecutive numbers in hand (one worker: one run; several: a block left over and
        the one drawn after another worker's), once per group of ``AHEAD_APPS``."""
        assert self.ledger is not None
        # n - position is the same along a run of consecutive numbers.
        for _, run in groupby(enumerate(free), key=lambda item: item[1] - item[0]):
            self._held |= self.ledger.licenses_held(
                [format_license(self.year, n, series) for _, n in run])
        self._checked.add(series)

    def record(self, number: str, ref: str | None) -> None:
        """A registered number (guide 5.1a) recorded by this file, for ``ref``."""
        self.issued += 1
        self.recorded[number] = ref

    def change(self, change: LicenseChange) -> None:
        """Supersede or cancel a license inside the file's transaction (nothing in a dry
        run). Another worker that changed it first wins: this file's pass is undone and the
        file decided again at the next poll, when the license's new state answers (A107 or
        I201), never a second change of one license."""
        if self.dry:
            return
        assert self.ledger is not None
        self.changed += 1
        if not self.ledger.change_license(change):
            raise TransientError(
                f"license {change.license_number} was changed by another worker while this "
                "file was decided: the file is decided again at the next poll")

    def save(self) -> None:
        if self.ledger is not None and not self.ledger.readonly and not self.ledger.concurrent:
            for series in sorted(self.drawn):
                self.ledger.set_license_sequence(self.year, self.lasts[series], series)

    def release(self) -> None:
        """Give the numbers drawn and not issued back to the shared counter when nobody drew
        after them (files decided one at a time: always, so that numbers follow on as if
        drawn one by one); otherwise they stay a gap. Called when the file's pass ends,
        committed or not: numbers it issued are never given back (its commit may have reached
        the server even when the client saw an error), so a pass undone leaves a gap, as
        before."""
        free, self._free = self._free, {}
        if self.ledger is None or not self.ledger.concurrent:
            return  # one writer: the counter is saved with the licenses (``save``)
        for series, (first, last) in sorted(self._run.items()):
            unused = [n for n in free.get(series, ()) if first <= n <= last]
            if unused:
                try:
                    self.ledger.return_license_sequences(self.year, series, unused[0], last)
                except TransientError as err:  # a gap, nothing worse
                    log.warning("license numbers %s%d-%d not given back: %s", series,
                                unused[0], last, err)
        self._run = {}
