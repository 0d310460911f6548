"""Issue 15's regression test: the gateway's CPU cost over the lxml parse + XSD floor, on a
small generated file, must not grow by more than 25 % over the ratio recorded in
bench/recorded.json (re-record: ``.venv/bin/python bench/run_bench.py --record``).

No timed assertion: a ratio of two CPU times measured side by side in the same test, each side
the best of alternating runs (bench/regression.py says why that holds on a loaded machine).
The measuring code is bench/regression.py's, the one that wrote the recorded figure.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import regression  # noqa: E402
from measure import find_gateway  # noqa: E402


@pytest.fixture(scope="module")
def gateway() -> str:
    found = find_gateway(sys.executable)
    assert found, "aim-gateway is not installed next to this interpreter (pip install -e .)"
    return found


def test_the_ratio_is_within_25_percent_of_the_recorded_one(tmp_path: Path,
                                                            gateway: str) -> None:
    assert regression.RECORDED.is_file(), (
        f"no recorded ratio: record it with {regression.RECORD_COMMAND}")
    recorded = regression.load_recorded()
    assert not regression.same_setup(recorded), (
        f"bench/recorded.json was measured on another file ({regression.same_setup(recorded)}):"
        f" re-record with {regression.RECORD_COMMAND}")
    ok, message, results = regression.check(sys.executable, gateway, tmp_path,
                                            recorded["ratio"])
    measured = "; ".join(regression.describe(r) for r in results)
    print(f"{message}; {measured}")  # shown with pytest -s / -rP
    assert ok, (f"{message}\n  measured: {measured}\n  recorded "
                f"{recorded['recorded_at']} on {recorded['machine']['node']} at commit "
                f"{recorded['commit']} ({recorded['command']})")


def test_the_check_reports_a_ratio_25_percent_over_the_recorded_one() -> None:
    assert regression.verdict(7.0, 7.0)[0]
    assert regression.verdict(3.0, 7.0)[0]  # faster is no regression (re-record to keep it)
    assert regression.verdict(8.75, 7.0)[0]  # exactly 25 % more: still within
    ok, message = regression.verdict(8.76, 7.0)
    assert not ok
    assert message.startswith("REGRESSION") and "+25%" in message and "8.750x" in message
    assert not regression.verdict(14.0, 7.0)[0]


def test_a_slower_gateway_fails_the_check(tmp_path: Path, gateway: str) -> None:
    """The whole chain catches a slowdown: the same measurement, with a gateway that burns its
    own CPU time again before it starts (twice as slow: far past 25 %, so the baseline's
    noise cannot hide it), is reported as a regression against the real gateway's ratio
    measured just before (on a smaller file, two repetitions: this is about the check, not
    the figure)."""
    lines, repeat = 2000, 2
    real = regression.measure_ratio(sys.executable, gateway, tmp_path / "real", lines=lines,
                                    repeat=repeat)
    burn = min(real["gateway_cpu_s"])
    slow = tmp_path / "slow-aim-gateway"
    # The CPU burnt before the exec counts in the same process's rusage (same pid).
    slow.write_text(f"#!{sys.executable}\n"
                    "import os, sys, time\n"
                    f"while time.process_time() < {burn}:\n"
                    "    pass\n"
                    f"os.execv({gateway!r}, [{gateway!r}, *sys.argv[1:]])\n")
    slow.chmod(slow.stat().st_mode | stat.S_IXUSR)
    ok, message, slowed = regression.check(sys.executable, str(slow), tmp_path / "slow",
                                           real["ratio"], lines=lines, repeat=repeat)
    assert not ok, (f"a gateway twice as slow passed: {message}\n  real: "
                    f"{regression.describe(real)}\n  slowed: "
                    + "; ".join(regression.describe(r) for r in slowed))
    assert len(slowed) == 2 and "the lower of two measurements" in message
