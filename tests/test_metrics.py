"""/metrics, /healthz and /readyz over real HTTP: the monitor server on a free port, a real
`serve` process with them inside, parsed with prometheus_client's own parser and checked
against the ledger."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import ProjectConfig, wait_until
from prometheus_client.parser import text_string_to_metric_families
from sftp_server import free_port

from gateway.admin.monitor import background_servers
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError

CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox" / "sample"
TOKEN = "metrics-test-token-6f1c2a9e8b7d4c3a"


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample by name and sorted labels (the text must parse as Prometheus format)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


@contextmanager
def monitor(cfg: Path) -> Iterator[str]:
    """The monitor server of ``cfg`` on a free port, as ``serve`` runs it."""
    config = load_config(cfg)
    with background_servers(replace(config, metrics=replace(config.metrics, port=0))) as up:
        yield up.addresses[0].removeprefix("metrics on ")


def failing_partner(config: ProjectConfig, base: Path) -> ProjectConfig:
    keys = base / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "known_hosts").write_text("")
    (keys / "id").write_text("not a key")
    return config.partner("flaky", inbox=None, kind="sftp", host="127.0.0.1", port=free_port(),
                          user="u", key_file=keys / "id", known_hosts=keys / "known_hosts",
                          failure_alert_after=1, connect_timeout=2)


def test_metrics_tell_what_the_ledger_holds(tmp_path: Path) -> None:
    config = ProjectConfig(tmp_path).partner("acme").partner("bravo")
    for name in ("acme-20261201-good.xml", "acme-20261201-partial.xml"):
        shutil.copy(CASES_INBOX / name, config.inbox("acme") / name)
    (config.inbox("bravo") / "bad.xml").write_bytes(b"<not xml")
    cfg = config.write()
    assert main(["--config", str(cfg), "run", "--once"]) == 0
    (config.inbox("acme") / "waiting.xml").write_bytes(b"<later/>")  # the backlog
    with monitor(cfg) as url:
        code, text = get(url + "metrics")
    assert code == 200
    found = samples(text)
    assert value(found, "aimgw_ledger_up") == 1
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        files = con.execute("SELECT partner, status, COUNT(*) FROM files "
                            "GROUP BY partner, status").fetchall()
        apps = con.execute("SELECT f.partner, a.status, COUNT(*) FROM applications a JOIN "
                           "files f USING (file_id) GROUP BY 1, 2").fetchall()
        licenses = con.execute("SELECT partner, state, kind, COUNT(*) FROM licenses "
                               "GROUP BY 1, 2, 3").fetchall()
        findings = con.execute("SELECT f.partner, x.severity, x.code, COUNT(*) FROM findings x "
                               "JOIN files f USING (file_id) GROUP BY 1, 2, 3").fetchall()
    assert {("acme", "ACCEPTED"), ("acme", "PARTIAL"), ("bravo", "REJECTED")} <= {
        (p, s) for p, s, _ in files}
    for partner, status, count in files:
        assert value(found, "aimgw_files", partner=partner, status=status) == count
    for partner, status, count in apps:
        assert value(found, "aimgw_applications", partner=partner, status=status) == count
    assert licenses
    for partner, state, kind, count in licenses:
        assert value(found, "aimgw_licenses", partner=partner, state=state, kind=kind) == count
    assert findings
    for partner, severity, code, count in findings:
        assert value(found, "aimgw_findings", partner=partner, severity=severity,
                     code=code) == count
    assert value(found, "aimgw_partner_state", partner="acme", state="ok") == 1
    assert value(found, "aimgw_partner_state", partner="acme", state="failing") == 0
    assert value(found, "aimgw_backlog_files", partner="acme") == 1
    assert value(found, "aimgw_unfinished_files", partner="acme") == 0
    assert value(found, "aimgw_partner_last_success_timestamp_seconds", partner="bravo")
    assert value(found, "aimgw_mail_unsent") == 0


def test_readyz_names_a_failing_partner_and_healthz_stays_ok(tmp_path: Path) -> None:
    config = ProjectConfig(tmp_path).partner("acme")
    config.inbox("acme")
    cfg = config.write()
    assert main(["--config", str(cfg), "run", "--once"]) == 0
    with monitor(cfg) as url:
        assert get(url + "readyz") == (200, "ready\n")
    cfg = failing_partner(config, tmp_path).write()
    assert main(["--config", str(cfg), "run", "--once"]) == 0
    with monitor(cfg) as url:
        code, text = get(url + "readyz")
        assert code == 503 and "partner flaky is failing" in text
        assert get(url + "healthz") == (200, "ok\n")
        found = samples(get(url + "metrics")[1])
        assert value(found, "aimgw_partner_failing", partner="flaky") == 1
        assert value(found, "aimgw_partner_state", partner="flaky", state="failing") == 1
        assert get(url + "nothing")[0] == 404


def test_a_ledger_that_does_not_answer_is_not_ready(tmp_path: Path) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/aimgw"  # nobody listens there
    cfg = ProjectConfig(tmp_path).ledger(dsn).partner("acme").write()
    with monitor(cfg) as url:
        code, text = get(url + "readyz")
        assert code == 503 and "the ledger does not answer" in text
        code, text = get(url + "metrics")
        assert code == 200 and value(samples(text), "aimgw_ledger_up") == 0


def test_serve_serves_metrics_and_the_admin_page(tmp_path: Path) -> None:
    metrics_port, web_port = free_port(), free_port()
    config = (ProjectConfig(tmp_path).set("gateway", poll_interval_seconds=1)
              .set("metrics", port=metrics_port).set("web", port=web_port, in_serve=True)
              .partner("acme"))
    shutil.copy(CASES_INBOX / "acme-20261201-good.xml", config.inbox("acme") / "a.xml")
    cfg = config.write()
    log = tmp_path / "serve.log"
    env = {**os.environ, "AIMGW_WEB_TOKEN": TOKEN}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config",
                                 str(cfg)], stdout=out, stderr=out, env=env)
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"

    def polled_and_done() -> bool:
        try:
            found = samples(get(metrics)[1])
        except OSError:
            return False
        polls = value(found, "aimgw_poll_duration_seconds_count", partner="acme") or 0
        return polls >= 1 and value(found, "aimgw_files", partner="acme",
                                    status="ACCEPTED") == 1

    try:
        assert wait_until(polled_and_done, 60), log.read_text(errors="replace")
        assert get(f"http://127.0.0.1:{metrics_port}/readyz")[0] == 200
        assert get(f"http://127.0.0.1:{web_port}/")[0] == 401  # the page keeps its token
        code, page = get(f"http://127.0.0.1:{web_port}/", TOKEN)
        assert code == 200 and "acme" in page
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text(errors="replace")
    assert f"metrics on http://127.0.0.1:{metrics_port}/" in log.read_text()


def test_serve_without_the_web_token_does_not_start(tmp_path: Path) -> None:
    cfg = (ProjectConfig(tmp_path).set("web", port=free_port(), in_serve=True)
           .partner("acme").write())
    env = {k: v for k, v in os.environ.items() if k != "AIMGW_WEB_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0 and "AIMGW_WEB_TOKEN" in done.stderr
    assert not (tmp_path / "data" / "events.jsonl").exists() or \
        '"service.start"' not in (tmp_path / "data" / "events.jsonl").read_text()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "metrics.example.com"])
def test_metrics_only_on_a_loopback_address(tmp_path: Path, host: str) -> None:
    cfg = ProjectConfig(tmp_path).set("metrics", port=9100, host=host).write()
    with pytest.raises(ConfigError, match="loopback"):
        load_config(cfg)


@pytest.mark.parametrize(("host", "code"), [
    ("evil.com", 421), ("evil.com:9100", 421), ("127.0.0.1.evil.com", 421), ("", 421),
    ("localhost", 200), ("127.0.0.1:9100", 200), ("[::1]:9100", 200)])
def test_the_endpoints_answer_loopback_host_headers_only(tmp_path: Path, host: str,
                                                         code: int) -> None:
    """A page of evil.com rebound to 127.0.0.1 (DNS rebinding) sends ``Host: evil.com``: it
    must not read /metrics, /healthz or /readyz through a browser on this machine."""
    cfg = ProjectConfig(tmp_path).partner("acme").write()
    with monitor(cfg) as url:
        parts = urlsplit(url)
        for path in ("/metrics", "/healthz", "/readyz"):
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                    timeout=10)
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            body = response.read().decode()
            if code == 421:
                assert response.status == 421 and "aimgw_" not in body, (path, body)
            else:  # /readyz may say 503: no ledger yet
                assert response.status in (200, 503) and "Host" not in body, (path, body)
