"""The suite reads its sample files from tests/cases, never from the working tree's inbox/.

A user may drop files into ``inbox/sample/`` to try the gateway; the suite must not see them
(it copied the whole folder once, so a dropped file made it slow and failing).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# The project root followed by the inbox folder, however the root is spelled.
READS_ROOT_INBOX = re.compile(
    r'(\bROOT|parent\.parent|parents\[1\])\s*/\s*["\']inbox["\']'
    # ... or a gateway run started in the working tree, where ./config.toml and its inbox/ are
    r'|\bcwd\s*=\s*(str\()?ROOT\b'
    # ... or the shipped config.toml loaded where it lies, its inboxes the working tree's
    r'|load_config\(.*?(\bROOT\b|parent\.parent|parents\[1\])')


# This file is left out: its own examples below spell the pattern on purpose.
SOURCES = sorted(p for p in TESTS.glob("*.py") if p.name != Path(__file__).name)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_no_test_reads_the_working_tree_inbox(source: Path) -> None:
    hits = [f"{source.name}:{number}: {line.strip()}"
            for number, line in enumerate(source.read_text("utf-8").splitlines(), 1)
            if READS_ROOT_INBOX.search(line)]
    assert hits == []


def test_the_pattern_catches_each_spelling() -> None:
    # Spelled from parts: this file's own text never reads like such a read.
    box = "in" + "box"
    for line in (f'ROOT / "{box}" / "sample"', f"Path(__file__).parent.parent / '{box}'",
                 f'Path(__file__).parents[1] / "{box}"', "Popen(args, cwd=" + "ROOT,",
                 "run(args, cwd=str(" + "ROOT))",
                 "load_" + "config(Path(__file__).parents[1]" + ' / "config.toml")',
                 "load_" + "config(RO" + 'OT / "config.toml")'):
        assert READS_ROOT_INBOX.search(line), line
    assert not READS_ROOT_INBOX.search('CASES_INBOX / "sample"')
    assert not READS_ROOT_INBOX.search("Popen(args, cwd=base)")
    assert not READS_ROOT_INBOX.search('load_' + 'config(tmp_path / "config.toml")')
