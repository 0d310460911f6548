"""deploy/aim-gateway.service, the systemd unit for ``serve`` (issue 14 item 13), checked by
systemd itself: ``systemd-analyze verify`` (syntax, directives, the command) and ``security
--offline`` (the hardening's exposure score)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "aim-gateway.service"
INSTALLED = "/opt/aim-gateway/venv/bin/aim-gateway"  # the documented layout's console script
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 2.0  # systemd's scale: 0 (locked down) to 10; "OK" is below 4.5


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def analyze() -> str:
    if ANALYZE is None:
        if os.geteuid() == 0:
            pytest.fail("systemd-analyze is missing: `make system-deps` installs the Debian "
                        "package systemd", pytrace=False)
        pytest.skip("systemd-analyze is missing (Debian package systemd) and this user "
                    "cannot install it: `sudo apt-get install systemd`")
    return ANALYZE


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit as shipped, its ExecStart pointing at this checkout's console script (verify
    checks that the command exists; /opt/aim-gateway is the install's, not the test's)."""
    script = Path(sys.executable).parent / "aim-gateway"
    assert script.is_file(), f"{script}: `pip install -e .` installs it"
    text = UNIT.read_text()
    assert INSTALLED in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED, str(script)))
    return copy


def test_systemd_verifies_the_unit(analyze: str, unit: Path) -> None:
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_unit_is_hardened(analyze: str, unit: Path) -> None:
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(unit)],
                            capture_output=True, text=True, check=False)
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert score is not None, result.stdout + result.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize(("key", "value"), [
    ("User", "aimgw"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("Restart", "on-failure"),
    ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ("ReadWritePaths", "/var/lib/aim-gateway/data /var/lib/aim-gateway/outbox"),
    ("ExecStart", f"{INSTALLED} serve --config /etc/aim-gateway/config.toml"),
])
def test_the_unit_says(key: str, value: str) -> None:
    assert directives().get(key) == [value]
