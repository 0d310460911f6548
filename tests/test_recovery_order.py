"""The start-up recovery finishes first the file whose outputs a crash left published.

On SQLite the license counter rolls back with a crashed pass, and OPERATIONS.md's "a rerun
writes the same bytes" holds only if that file draws the same numbers again. With `serve`, a
second partner's file can be received (committed) while the first partner's pass holds the
write lock; killed after the first file's ACE files and ack were published, the recovery used
to finish partners in name order: the second file drew the numbers the published ACE file
carried (a transmitter may already have sent it to CBP), and the crashed file's rerun others
(found by a review of issue 15). The first partner's name sorts after the second's here.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from conftest import ProjectConfig
from test_crash import SAMPLES, crash_gateway, extra_submission, query, rerun_until_done

from gateway.config import load_config
from gateway.inbox.kinds import open_inbox
from gateway.inbox.receipt import receive
from gateway.ledger.events import EventLog
from gateway.ledger.store import open_ledger
from gateway.storage import Layout

NUMBER = re.compile(r"A\d{8}")


def test_a_crashed_files_published_numbers_stay_its_own(tmp_path: Path) -> None:
    project = ProjectConfig(tmp_path).partner("acme", filer_code="SMP", filer=True) \
        .partner("zeta", filer_code="SMP", filer=True)
    config_path = project.write()
    (project.inbox("zeta") / "z.xml").write_bytes(
        (SAMPLES / "acme-20261201-good.xml").read_bytes())
    project.inbox("acme")
    # zeta's file: its ACE files and ack published, the process killed before the commit.
    crash_gateway(config_path, "after_outputs")
    published = {p.name: p.read_text() for p in (tmp_path / "outbox" / "ace").glob("*.txt")}
    numbers = set(NUMBER.findall("".join(published.values())))
    assert numbers  # what a transmitter may have taken meanwhile
    # acme's file, received (committed) by its own thread while zeta's pass held the lock.
    (project.inbox("acme") / "a.xml").write_bytes(extra_submission())
    config = load_config(config_path)
    ledger = open_ledger(config)
    inbox = open_inbox(config.partner("acme"), ledger)
    try:
        (remote,) = inbox.list()
        receive(inbox, remote, ledger, Layout.of(config), EventLog(None), date(2026, 12, 1))
    finally:
        inbox.close()
        ledger.close()

    rerun_until_done(config_path)

    owners = dict(query(tmp_path, "SELECT license_number, partner FROM licenses"))
    assert {n: owners.get(n) for n in numbers} == {n: "zeta" for n in numbers}
    # The rerun wrote the same bytes under the same names.
    assert {p.name: p.read_text() for p in (tmp_path / "outbox" / "ace").glob("*.txt")
            if p.name in published} == published
    assert sorted(p for (p,) in query(tmp_path, "SELECT DISTINCT partner FROM licenses")) == [
        "acme", "zeta"]
