"""Issue 10, "done when": one partner's trouble is that partner's alone.

For every kind of poison a careless or hostile partner can send (a name, content, size,
volume, a link, its licence appetite), partner ``a`` sends it and partner ``b`` sends a good
file; ONE ``aim-gateway run --once`` (a real subprocess) must exit 0, give ``a``'s file the
outcome it deserves, and license ``b``'s file in the same run. A second run must go as well
(nothing left half-done stops it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_hostile import GENERATORS, HOSTILE
from test_poison import Project, good_file

GOOD_B = "good.xml"


@dataclass(frozen=True)
class Poison:
    """What partner ``a`` sends, and what its file must come to."""

    send: Callable[[Project, Path], str | None]  # drops the file(s); the name to look up
    status: str | None  # the file's status (None: no file of ``a`` may be taken at all)
    code: str | None = None  # a finding the file must carry
    partner_a: str = ""  # extra keys of partner a's profile
    gateway: str = ""  # extra keys of [gateway]


def _named(name: str, data: bytes) -> Callable[[Project, Path], str]:
    def send(p: Project, _base: Path) -> str:
        p.drop("a", name, data)
        return name
    return send


def _generated(key: str) -> Callable[[Project, Path], str]:
    def send(p: Project, base: Path) -> str:
        path = p.drop("a", key, b"")
        GENERATORS[key](path)
        os.utime(path, (1_790_000_000, 1_790_000_000))
        return key
    return send


def _duplicate_with_control_name(p: Project, _base: Path) -> str:
    """The reproduction of item 1: an empty file, then the same bytes under ``b\\x01.xml``."""
    p.drop("a", "a.xml", b"")
    assert p.run().returncode == 0
    p.drop("a", "b\x01.xml", b"")
    return "b\x01.xml"


def _volume(p: Project, _base: Path) -> str:
    for n in range(12):
        p.drop("a", f"bulk-{n:02d}.xml", good_file(20 + n))
    return "bulk-00.xml"


def _link_to_b(p: Project, base: Path) -> None:
    secret = base / "secret.xml"
    secret.write_bytes(good_file(40))
    (base / "in" / "a" / "stolen.xml").symlink_to(secret)
    return None


def _foreign_digits(p: Project, _base: Path) -> str:
    data = good_file(50).replace(b"<PortOfEntry>3004</PortOfEntry>",
                                 "<PortOfEntry>٣٠٠٤</PortOfEntry>".encode(), 1)
    p.drop("a", "digits.xml", data)
    return "digits.xml"


POISONS = {
    "control character name on the DUPLICATE path": Poison(
        _duplicate_with_control_name, "DUPLICATE", "F006"),
    "terminal escapes and line breaks in the name": Poison(
        _named("x\x1b]0;owned\x07\r\n\x1b[31m.xml", good_file(60)), "ACCEPTED"),
    "900,000 attributes on one application": Poison(
        _generated("gen-900k-attributes.xml"), "PARTIAL", "A101"),
    "200,000 bad product lines": Poison(
        _generated("gen-many-findings.xml"), "PARTIAL", "A120"),
    "a 1 GB sparse file": Poison(
        _generated("gen-1gb-sparse.xml"), "REJECTED", "F003",
        gateway="max_file_bytes = 5000000\n"),
    "billion laughs": Poison(
        _named("laughs.xml", (HOSTILE / "billion-laughs.xml").read_bytes()), "REJECTED", "F004"),
    "binary junk": Poison(_named("junk.xml", bytes(range(256)) * 64), "REJECTED", "F002"),
    "digits of another script": Poison(_foreign_digits, "PARTIAL", "A160"),
    "more licenses than its daily quota": Poison(
        _named("many.xml", good_file(70)), "PARTIAL", "A109",
        partner_a="max_licenses_per_day = 1\n"),
    "a backlog of files": Poison(_volume, "ACCEPTED", partner_a="max_files = 2\n"),
    "a link to a file outside its inbox": Poison(_link_to_b, None),
}


@pytest.mark.parametrize("poison", list(POISONS.values()), ids=list(POISONS))
def test_partner_b_is_licensed_in_the_run_that_partner_a_poisons(
        tmp_path: Path, poison: Poison) -> None:
    p = Project(tmp_path)
    text = p.cfg.read_text()
    text = text.replace("[gateway]\n", "[gateway]\n" + poison.gateway, 1)
    text = text.replace("[partners.a]\n", "[partners.a]\n" + poison.partner_a, 1)
    p.cfg.write_text(text)
    name = poison.send(p, tmp_path)
    p.drop("b", GOOD_B, good_file(1))

    result = p.run()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert p.status_of("b", GOOD_B) == "ACCEPTED"
    licensed_b = p.rows("SELECT COUNT(*) FROM licenses WHERE partner = 'b'")[0][0]
    assert licensed_b == 3  # PO-4411, PO-4412, PO-4413 (WH-0077 is a warehouse entry)

    if poison.status is None:
        assert p.rows("SELECT COUNT(*) FROM files WHERE partner = 'a'") == [(0,)]
    else:
        assert name is not None
        assert p.status_of("a", name) == poison.status
    if poison.code is not None:
        codes = {c for (c,) in p.rows(
            "SELECT f.code FROM findings f JOIN files USING (file_id) "
            "WHERE files.partner = 'a' AND files.remote_name = ?", name)}
        assert poison.code in codes, codes

    # And the next run goes as well: nothing the poison left stops it.
    p.drop("b", "good-2.xml", good_file(2))
    again = p.run()
    assert again.returncode == 0, again.stderr
    assert p.status_of("b", "good-2.xml") == "ACCEPTED"
