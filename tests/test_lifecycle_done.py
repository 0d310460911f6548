"""Issue 13's "Done when", end to end through the command line (guide 5.1a, 5.1b, 7), on
partner files in contract 1.1's own syntax, the gateway as ``aim-gateway`` runs it.

A partner sends an application, then its correction, then the cancellation of the correction:
three files, three ``run --once`` (on three days). It gets three acknowledgments; the ledger
holds two licenses, the first ``SUPERSEDED``, the second ``CANCELLED`` (``aim-gateway
licenses --state``); the transmitter gets one ACE file per issued license and two lines in
changes files, one in each file's report; ``aim-gateway show`` tells the license's history.
``aim-gateway check`` on the correction before it is run answers ``PENDING`` with I202 (exit
0) and changes nothing. The same story in XML, canonical CSV, a CSV mapped by TOML (the Hanse
export with four more columns), an XML mapped by XSLT (mappings/nordic-orders.xsl), and once
over SFTP (tests/sftp_server.py).

A registered-license partner's file yields ACE records with its own numbers (52 record,
positions 5-14) and I204; a low-value application gets an ``L`` number and a 52 record with
license type code 28.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lifecycle_files as lf
import pytest
from lxml import etree
from project_config import ProjectConfig
from sftp_server import SshServer
from test_crash import query

from gateway.cli import main
from gateway.schemas import ack_schema

ROOT = Path(__file__).resolve().parents[1]
DAYS = ("2026-12-01", "2026-12-02", "2026-12-03")
ACK = "{urn:aimgw:license-ack:1}"
REASON = "order cancelled by the buyer"
# The CSV ack's first row: "N application(s): a licensed, b not required, c rejected, ..."
CSV_COUNTS = re.compile(r"(\d+) application\(s\): (\d+) licensed, (\d+) not required, "
                        r"(\d+) rejected(?:, (\d+) cancelled)?")


# -- what an acknowledgment says -------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """An acknowledgment as a test compares it: the file's status, its counts (applications,
    licensed, not required, rejected, cancelled) and per application (ref, status, license,
    codes)."""

    status: str
    counts: tuple[int, int, int, int, int]
    apps: list[tuple[str, str, str, tuple[str, ...]]]


def read_ack(data: bytes) -> Ack:
    if data.startswith(b"<?xml"):
        root = etree.fromstring(data)
        assert ack_schema().validate(root), ack_schema().error_log
        names = ("Applications", "Licensed", "NotRequired", "Rejected", "Cancelled")
        counts = tuple(int(root.findtext(f"{ACK}Counts/{ACK}{n}") or 0) for n in names)
        apps = [(a.get("ref") or "", a.get("status") or "",
                 a.findtext(f"{ACK}LicenseNumber") or "",
                 tuple(f.get("code") or "" for f in a.iter(f"{ACK}Finding")))
                for a in root.iter(f"{ACK}Application")]
        return Ack(root.findtext(f"{ACK}Status") or "", counts, apps)  # type: ignore[arg-type]
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    summary = CSV_COUNTS.match(rows[1][8])
    assert summary is not None, rows[1]
    counts = tuple(int(n or 0) for n in summary.groups())
    return Ack(rows[1][3], counts,  # type: ignore[arg-type]
               [(r[1], r[3], r[4], tuple(r[7].split())) for r in rows[2:]])


def ace_licenses(data: bytes) -> list[str]:
    """The license of each 52 record (positions 5-14), in file order; each record is the
    aluminum import license's (type code 28, positions 3-4)."""
    records = [r for r in data.decode("ascii").splitlines() if r.startswith("52")]
    assert all(r[2:4] == "28" and len(r) == 80 for r in records), records
    return [r[4:14].rstrip() for r in records]


def changes_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


# -- the partners' files ---------------------------------------------------------------------

# (application, its correction, the correction's cancellation) of one ref, as each partner
# spells them; the correction corrects A26000001, the cancellation cancels A26000002.
Story = tuple[bytes, bytes, bytes]


def xml_story() -> Story:
    return (lf.submission("DONE-1", lf.application("PO-1")),
            lf.submission("DONE-2", lf.application("PO-1", corrects="A26000001",
                                                   quantity="25000")),
            lf.submission("DONE-3", lf.cancellation("PO-1", "A26000002", REASON)))


def csv_story() -> Story:
    return (lf.csv_submission("DONE-1", lf.csv_application("PO-1")),
            lf.csv_submission("DONE-2", lf.csv_application("PO-1", corrects="A26000001",
                                                           quantity="25000")),
            lf.csv_submission("DONE-3", lf.csv_cancellation("PO-1", "A26000002")))


# The Hanse export (semicolons, Windows-1252, German numbers, tons) with four more columns,
# mapped onto contract 1.1's: Vorgang -> action, Lizenz -> license_number, ...
HANSE_TOML = (ROOT / "mappings" / "hanse-metall.toml").read_text(encoding="utf-8").replace(
    '"Wert USD" = "value_usd"\n', '"Wert USD" = "value_usd"\n"Vorgang" = "action"\n'
    '"Lizenz" = "license_number"\n"Ersetzt" = "corrects"\n"Art" = "license_kind"\n')
HANSE_HEAD = ("Belegnr;Bestellung;Zollanmeldung;Importeur;Exporteur;Hersteller;Ursprungsland;"
              "Versendungsland;Versanddatum;Ankunftsdatum;Hafen;Pos;Zolltarifnr;Bezeichnung;"
              "Schmelzland 1;Schmelzland 2;Gießland;Menge (t);Wert USD;"
              "Vorgang;Lizenz;Ersetzt;Art\r\n")


def hanse_file(sid: str, *, tons: str = "24,000", corrects: str = "",
               cancels: str | None = None) -> bytes:
    if cancels is not None:
        row = [sid, "4500099001", *[""] * 17, "CANCEL", cancels, "", ""]
    else:
        row = [sid, "4500099001", "", "ACME ALUMINUM IMPORTS LLC", "HANSE METALL HANDEL GMBH",
               "SPEIRA GMBH", "Kanada", "Kanada", "10.12.2026", "15.12.2026", "3004", "10",
               "7606.12.3045", "Dosenband", "Kanada", "entfällt", "Kanada", tons, "61.200,00",
               "", "", corrects, ""]
    assert len(row) == HANSE_HEAD.count(";") + 1
    return (HANSE_HEAD + ";".join(row) + "\r\n").encode("cp1252")


def hanse_story() -> Story:
    return (hanse_file("HMH-DONE-1"), hanse_file("HMH-DONE-2", tons="25,000",
                                                 corrects="A26000001"),
            hanse_file("HMH-DONE-3", cancels="A26000002"))


# Nordic's order export (urn:nordic-alu:orders:2): replaces="..." is a correction, a Cancel
# element a cancellation (mappings/nordic-orders.xsl).
NORDIC_ORDER = """  <Order no="SO-1" entry="01" port="3004"{replaces}>
    <Importer>ACME ALUMINUM IMPORTS LLC</Importer>
    <Shipper>NORDIC ALUMINIUM TRADING AS</Shipper>
    <Mill>NORDIC ROLLING AS</Mill>
    <Origin>CA</Origin>
    <ShippedFrom>CA</ShippedFrom>
    <Ships>2026-12-10</Ships>
    <Arrives>2026-12-15</Arrives>
    <Item pos="1" tariff="7606.12.3045">
      <Text>Can body stock</Text>
      <Smelter primary="CA" secondary="US"/>
      <Cast>CA</Cast>
      <NetKg>{kg}</NetKg>
      <UsdValue>61200.00</UsdValue>
    </Item>
  </Order>
"""


def nordic_file(batch: str, body: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Orders xmlns="urn:nordic-alu:orders:2">\n'
            f'  <Batch id="{batch}"/>\n{body}</Orders>\n').encode()


def nordic_story() -> Story:
    return (nordic_file("NA-DONE-1", NORDIC_ORDER.format(replaces="", kg="24000")),
            nordic_file("NA-DONE-2", NORDIC_ORDER.format(replaces=' replaces="A26000001"',
                                                         kg="25000")),
            nordic_file("NA-DONE-3", f'  <Cancel no="SO-1" license="A26000002">{REASON}'
                                     "</Cancel>\n"))


@dataclass(frozen=True)
class Channel:
    """How one partner sends: its files, its ref, the extension of its files and its
    profile's settings; ``reason`` is what its cancellation's report line says."""

    story: Callable[[], Story]
    ref: str
    suffix: str
    settings: dict[str, object] = field(default_factory=dict)
    reason: str = REASON


CHANNELS = {
    "xml": Channel(xml_story, "PO-1", ".xml"),
    "csv": Channel(csv_story, "PO-1", ".csv", reason=""),  # a CSV cancel row has no reason
    "toml": Channel(hanse_story, "4500099001", ".csv", {"mapping": "hanse-done.toml"},
                    reason=""),
    "xslt": Channel(nordic_story, "SO-1", ".xml",
                    {"mapping": ROOT / "mappings" / "nordic-orders.xsl"}),
}


# -- a project -------------------------------------------------------------------------------


class Project:
    """A gateway project in ``base`` with partner ``pid``; commands run in-process through
    ``gateway.cli.main`` (what ``aim-gateway`` runs)."""

    def __init__(self, base: Path, capsys: pytest.CaptureFixture[str], pid: str,
                 config: ProjectConfig, inbox: Path, acks: Path) -> None:
        self.base, self.capsys, self.pid = base, capsys, pid
        self.cfg = config.write()
        self.inbox, self.acks = inbox, acks

    @classmethod
    def local(cls, base: Path, capsys: pytest.CaptureFixture[str], pid: str = "acme",
              **settings: object) -> Project:
        (base / "hanse-done.toml").parent.mkdir(parents=True, exist_ok=True)
        (base / "hanse-done.toml").write_text(HANSE_TOML, encoding="utf-8")
        config = ProjectConfig(base).partner(pid, disposition="keep", filer_code="SMP",
                                             **settings)
        return cls(base, capsys, pid, config, config.inbox(pid), base / "outbox" / pid)

    def cli(self, *args: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(["--config", str(self.cfg), *args])
        return code, self.capsys.readouterr().out

    def send(self, name: str, data: bytes, day: str) -> str:
        """Put one file in the partner's inbox and ``run --once`` on ``day``: its file id."""
        (self.inbox / name).write_bytes(data)
        assert self.cli("run", "--once", "--as-of", day)[0] == 0
        [(file_id,)] = self.query("SELECT file_id FROM files WHERE remote_name = ?", (name,))
        return str(file_id)

    def check(self, name: str, data: bytes, day: str) -> tuple[int, bytes]:
        path = self.base / "to-check" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        code, out = self.cli("check", str(path), "--partner", self.pid, "--as-of", day)
        return code, out.encode()

    def ack(self, file_id: str) -> Ack:
        [(name,)] = self.query("SELECT ack_name FROM files WHERE file_id = ?", (file_id,))
        return read_ack((self.acks / str(name)).read_bytes())

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return query(self.base, sql, params)

    def licenses(self, *args: str) -> list[dict[str, object]]:
        code, out = self.cli("licenses", "--json", *args)
        assert code == 0, out
        listed: list[dict[str, object]] = json.loads(out)
        return listed

    def outbox(self, folder: str) -> dict[str, bytes]:
        where = self.base / "outbox" / folder
        return {p.name: p.read_bytes() for p in sorted(where.iterdir())} if where.is_dir() \
            else {}


def with_manifests(*names: str) -> list[str]:
    return sorted(n for name in names for n in (name, f"{name}.manifest.json"))


# -- the story: application, correction, the correction cancelled ---------------------


def story(project: Project, channel: Channel) -> None:
    first, fix, cancel = channel.story()
    ref, suffix = channel.ref, channel.suffix
    names = [f"done-{n}{suffix}" for n in (1, 2, 3)]

    f1 = project.send(names[0], first, DAYS[0])
    assert project.ack(f1) == Ack("ACCEPTED", (1, 1, 0, 0, 0),
                                  [(ref, "LICENSED", "A26000001", ())])

    # The correction checked before it is run: what it would get, nothing changed.
    code, checked = project.check(names[1], fix, DAYS[1])
    assert (code, read_ack(checked)) == (0, Ack("ACCEPTED", (1, 1, 0, 0, 0),
                                                [(ref, "LICENSED", "PENDING", ("I202",))]))
    assert project.query("SELECT state FROM licenses") == [("ACTIVE",)]
    assert project.query("SELECT COUNT(*) FROM license_changes") == [(0,)]

    f2 = project.send(names[1], fix, DAYS[1])
    assert project.ack(f2) == Ack("ACCEPTED", (1, 1, 0, 0, 0),
                                  [(ref, "LICENSED", "A26000002", ("I202",))])
    f3 = project.send(names[2], cancel, DAYS[2])
    assert project.ack(f3) == Ack("ACCEPTED", (1, 0, 0, 0, 1),
                                  [(ref, "CANCELLED", "A26000002", ("I203",))])

    # Two licenses: the first SUPERSEDED by the second, the second CANCELLED.
    def listed(state: str) -> list[tuple[object, ...]]:
        return [(x["license_number"], x["ref"], x["replaces"], x["replaced_by"])
                for x in project.licenses("--state", state, "--as-of", DAYS[2])]

    assert listed("SUPERSEDED") == [("A26000001", ref, None, "A26000002")]
    assert listed("CANCELLED") == [("A26000002", ref, "A26000001", None)]
    assert listed("ACTIVE") == [] and listed("EXPIRED") == []

    # One ACE file per issued license; the cancellation writes none.
    ace = project.outbox("ace")
    assert sorted(ace) == with_manifests(f"AE-{f1}.txt", f"AE-{f2}.txt")
    assert ace_licenses(ace[f"AE-{f1}.txt"]) == ["A26000001"]
    assert ace_licenses(ace[f"AE-{f2}.txt"]) == ["A26000002"]

    # Two lines in changes files: one in the correction's report, one in the cancellation's.
    reports = project.outbox("changes")
    assert sorted(reports) == with_manifests(f"CHG-{f2}.csv", f"CHG-{f3}.csv")
    line = {"partner": project.pid, "ref": ref}
    assert changes_rows(reports[f"CHG-{f2}.csv"]) == [{
        "license_number": "A26000001", **line, "change": "SUPERSEDED",
        "replaced_by": "A26000002", "when": DAYS[1], "reason": ""}]
    assert changes_rows(reports[f"CHG-{f3}.csv"]) == [{
        "license_number": "A26000002", **line, "change": "CANCELLED", "replaced_by": "",
        "when": DAYS[2], "reason": channel.reason}]

    # The license's history, as `show` tells it.
    code, shown = project.cli("show", "A26000002", "--as-of", DAYS[2])
    assert code == 0
    history = shown[shown.index("history:\n"):].splitlines()[1:]
    because = f": {channel.reason}" if channel.reason else ""
    assert [h.strip() for h in history if h.strip()] == [
        f"A26000001 issued on {DAYS[0]} by file {f1} ({names[0]})",
        f"A26000001 superseded by A26000002 on {DAYS[1]} in file {f2} ({names[1]})",
        f"A26000002 issued on {DAYS[1]} by file {f2} ({names[1]}), replacing A26000001",
        f"A26000002 cancelled on {DAYS[2]} in file {f3} ({names[2]}){because}"]
    assert shown.startswith("license A26000002  CANCELLED")


@pytest.mark.parametrize("kind", list(CHANNELS))
def test_application_correction_and_its_cancellation(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    channel = CHANNELS[kind]
    story(Project.local(tmp_path, capsys, **channel.settings), channel)


def test_application_correction_and_its_cancellation_over_sftp(
        sshd: SshServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    account = sshd.account("acme")
    config = ProjectConfig(tmp_path).sftp_partner("acme", sshd, account, filer_code="SMP")
    project = Project(tmp_path, capsys, "acme", config, Path(account.inbox),
                      Path(account.acks))
    story(project, CHANNELS["xml"])


# -- registered and low-value licenses in the ACE records -------------------------------------


REGISTERED = {
    "xml": lambda: lf.submission("REG-1", lf.application("PO-1", license_number="CAIM12345"),
                                 lf.application("PO-2", license_number="AL20260042")),
    "csv": lambda: lf.csv_submission(
        "REG-1", lf.csv_application("PO-1", license_number="CAIM12345"),
        lf.csv_application("PO-2", license_number="AL20260042")),
}


@pytest.mark.parametrize("kind", list(REGISTERED))
def test_a_registered_partners_file_yields_ace_records_with_its_own_numbers(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = Project.local(tmp_path, capsys, "broker", license_source="commerce")
    file_id = project.send(f"reg.{kind}", REGISTERED[kind](), DAYS[0])
    assert project.ack(file_id) == Ack("ACCEPTED", (2, 2, 0, 0, 0), [
        ("PO-1", "LICENSED", "CAIM12345", ("I204",)),
        ("PO-2", "LICENSED", "AL20260042", ("I204",))])
    ace = project.outbox("ace")
    assert ace_licenses(ace[f"AE-{file_id}.txt"]) == ["CAIM12345", "AL20260042"]
    assert json.loads(ace[f"AE-{file_id}.txt.manifest.json"])["licenses"] == [
        "CAIM12345", "AL20260042"]
    assert sorted((x["license_number"], x["source"], x["state"]) for x in project.licenses(
        "--as-of", DAYS[0])) == [("AL20260042", "commerce", "ACTIVE"),
                                 ("CAIM12345", "commerce", "ACTIVE")]  # type: ignore[type-var]
    assert project.query("SELECT COUNT(*) FROM license_counter") == [(0,)]  # nothing minted


LOW_VALUE = {
    "xml": lambda: lf.submission("LOW-1", lf.application(
        "PO-7", kind="LOW_VALUE", quantity="1000", value="2550.00")),
    "csv": lambda: lf.csv_submission("LOW-1", lf.csv_application(
        "PO-7", kind="LOW_VALUE", quantity="1000", value="2550.00")),
}


@pytest.mark.parametrize("kind", list(LOW_VALUE))
def test_a_low_value_application_gets_an_l_number_in_a_type_28_record(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = Project.local(tmp_path, capsys)
    file_id = project.send(f"low.{kind}", LOW_VALUE[kind](), DAYS[0])
    assert project.ack(file_id) == Ack("ACCEPTED", (1, 1, 0, 0, 0),
                                       [("PO-7", "LICENSED", "L26000001", ())])
    ace = project.outbox("ace")[f"AE-{file_id}.txt"]
    [r52] = [r for r in ace.decode("ascii").splitlines() if r.startswith("52")]
    assert r52 == "5228L26000001".ljust(80)
    assert [(x["license_number"], x["kind"]) for x in project.licenses(
        "--as-of", DAYS[0])] == [("L26000001", "LOW_VALUE")]
