"""Issue 15's regression test: the gateway's cost over the lxml parse + XSD floor, on a
small generated file, must not grow by more than 25 % over the ratio recorded in
bench/recorded.json (re-record: ``.venv/bin/python bench/run_bench.py --record``).

No timed assertion: a ratio of instructions executed, both sides counted by valgrind in the
same test (bench/regression.py says why a count and not CPU seconds). The measuring code is
bench/regression.py's, the one that wrote the recorded figure.
"""

from __future__ import annotations

import stat
import subprocess
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
    ok, message, result = regression.check(sys.executable, gateway, tmp_path,
                                           recorded["ratio"])
    measured = regression.describe(result)
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


BURN = "for _ in range({n}):\n    pass\n"  # the loop a slowed gateway runs first


def test_a_slower_gateway_fails_the_check(tmp_path: Path, gateway: str) -> None:
    """The whole chain catches a slowdown: the same measurement, with a gateway that first
    runs a loop of as many instructions as the real gateway's whole run (twice the work: far
    past 25 %), is reported as a regression against the real gateway's ratio measured just
    before (on a smaller file: this is about the check, not the figure). The loop runs in the
    gateway's own process, before ``gateway.cli.main``: valgrind does not keep the count of a
    process image replaced by ``exec``."""
    lines = 500
    real = regression.measure_ratio(sys.executable, gateway, tmp_path / "real", lines=lines)

    def loop(n: int) -> int:
        return int(regression.count_instructions(
            lambda prefix, env: _run([*prefix, sys.executable, "-c", BURN.format(n=n)], env),
            tmp_path / f"loop-{n}")["instructions"])

    per_step = (loop(1_000_000) - loop(0)) / 1_000_000
    steps = int(real["gateway_instructions"] / per_step)
    slow = tmp_path / "slow-aim-gateway"
    slow.write_text(f"#!{sys.executable}\n"
                    "import sys\n"
                    + BURN.format(n=steps) +
                    "from gateway.cli import main\n"
                    "sys.exit(main())\n")
    slow.chmod(slow.stat().st_mode | stat.S_IXUSR)
    ok, message, slowed = regression.check(sys.executable, str(slow), tmp_path / "slow",
                                           real["ratio"], lines=lines)
    assert not ok, (f"a gateway doing twice the work passed: {message}\n  real: "
                    f"{regression.describe(real)}\n  slowed: {regression.describe(slowed)}")
    assert slowed["gateway_instructions"] > 1.8 * real["gateway_instructions"], (
        "the loop did not double the work", regression.describe(slowed))


def _run(cmd: list[str], env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return {"returncode": done.returncode}
