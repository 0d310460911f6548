"""Generate a realistic license submission of a given number of product lines, as XML or CSV.

    python bench/generate.py --lines N [--lines-per-app K] --out FILE [--seed S]
                             [--as-of YYYY-MM-DD] [--error-rate R] [--format xml|csv]

The XML follows guide section 3 (namespace ``urn:aimgw:license-submission:1``), the CSV guide
section 4 (canonical CSV: UTF-8, RFC 4180, CRLF, a header row naming the columns of
``gateway.parse.csv_file.ALL_COLUMNS`` in that order, one row per product line, the rows of one
application consecutive). Both are written from the same records: the same arguments and seed
give the same applications, lines, values, refs and errors in either format, so the two files
of one seed are the same submission (same ``content_sha256`` in their meta files).

N product lines in applications of K lines (the last one takes the remainder), covered HTS
numbers from ``gateway/data/aim-covered-hts.csv``, real-looking exporters, countries, Schedule D
ports, and quantities and values whose unit value is plausible for the product group (so A180
does not fire). Every expected import date lies a few days after the processing date
(``--as-of``, 2026-12-01 by default), so every application is licensable on that date, except a
fraction (``--error-rate``, 1 % by default) that carries exactly one error finding, so that the
path with findings (value rules, and for XML the XSD slow path for A101) is exercised too.

The document is written as it is generated (never built in memory). Next to it,
``FILE.meta.json`` says what the gateway must answer: application count, how many are licensed
and rejected, the file status, and the shape of the ACE files. ``run_bench.py`` checks every
gateway run against it. The same arguments and seed always give the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import TextIO

NS = "urn:aimgw:license-submission:1"
ROOT = Path(__file__).resolve().parent.parent
COVERED_CSV = ROOT / "gateway" / "data" / "aim-covered-hts.csv"
FORMATS = ("xml", "csv")

# The field names and orders are the gateway's own (XML element order and CSV columns), so
# a generated file cannot drift from the format the gateway reads.
sys.path.insert(0, str(ROOT))
from gateway.model import APPLICATION_FIELDS, LINE_FIELDS  # noqa: E402
from gateway.parse.csv_file import ALL_COLUMNS  # noqa: E402

# Plausible unit values, USD per metric ton, per product group (well inside the 500-60,000
# range of A180). Anything not listed uses the default.
PRICE_BY_GROUP = {
    "Unwrought Aluminum – non-alloy": (2400, 2900),
    "Unwrought Aluminum – alloy": (2500, 3300),
    "Redraw Rod": (2800, 3400),
    "Bars, Rods & Profiles – non-alloy": (3700, 4800),
    "Bars, Rods & Solid Profiles – alloyed": (3900, 5600),
    "Hollow Profiles – alloyed": (4200, 6200),
    "Wire – non-alloy": (3200, 4200),
    "Wire – alloy": (3400, 4600),
    "Sheet & Plate": (3500, 5400),
    "Can Stock": (3100, 4000),
    "Aluminum Foil": (4000, 7500),
    "Seamless Pipe & Tube": (5500, 8500),
    "Non-Seamless Pipe & Tube": (4500, 6800),
    "Tube & Pipe Fittings": (7000, 13000),
    "Castings": (5000, 11000),
    "Forgings": (7000, 15000),
}
DEFAULT_PRICE = (3000, 6000)
# Net kilograms per line: ingots and billets ship by the truck or container, the rest smaller.
QTY_BY_GROUP = {
    "Unwrought Aluminum – non-alloy": (18000, 26000),
    "Unwrought Aluminum – alloy": (15000, 25000),
    "Redraw Rod": (15000, 24000),
    "Tube & Pipe Fittings": (300, 4000),
    "Castings": (500, 8000),
    "Forgings": (500, 6000),
}
DEFAULT_QTY = (1500, 24000)

IMPORTERS = (
    "ACME ALUMINUM IMPORTS LLC",
    "GREAT LAKES METAL SUPPLY INC",
    "PACIFIC COAST EXTRUSIONS CORP",
    "GULF STATES ALLOYS LLC",
    "ATLANTIC PACKAGING MATERIALS INC",
)

# (origin, export, exporter, manufacturer, smelt-largest choices, second choices)
SUPPLIERS = (
    ("CA", "CA", "NORTHERN ROLLING MILLS INC", "NORTHERN ROLLING MILLS INC",
     ("CA",), ("US", "IS", "NOT_APPLICABLE")),
    ("CA", "CA", "SAINT LAURENT ALUMINIUM LTEE", "SAINT LAURENT ALUMINIUM LTEE",
     ("CA",), ("NOT_APPLICABLE", "NO")),
    ("AE", "AE", "GULF EXTRUSIONS LLC", "GULF EXTRUSIONS LLC",
     ("AE",), ("BH", "OM", "NOT_APPLICABLE")),
    ("BH", "BH", "MANAMA SMELTING AND CASTING WLL", "MANAMA SMELTING AND CASTING WLL",
     ("BH",), ("AE", "NOT_APPLICABLE")),
    ("IN", "IN", "DECCAN ALUMINIUM PRODUCTS LTD", "DECCAN ALUMINIUM PRODUCTS LTD",
     ("IN",), ("AE", "NOT_APPLICABLE")),
    ("DE", "NL", "HANSEATIC METALS GMBH", "UNKNOWN",
     ("NO", "IS", "DE"), ("IS", "NO", "NOT_APPLICABLE")),
    ("DE", "DE", "RHEINISCHE WALZWERKE GMBH", "RHEINISCHE WALZWERKE GMBH",
     ("DE", "NO"), ("NO", "IS", "NOT_APPLICABLE")),
    ("MX", "MX", "ALUMINIOS DEL NORTE SA DE CV", "ALUMINIOS DEL NORTE SA DE CV",
     ("US", "CA"), ("CA", "NOT_APPLICABLE")),
    ("BR", "BR", "METAIS PAULISTA SA", "METAIS PAULISTA SA",
     ("BR",), ("AR", "NOT_APPLICABLE")),
    ("KR", "KR", "HANBIT ALUMINUM CO LTD", "HANBIT ALUMINUM CO LTD",
     ("AU", "AE"), ("NZ", "MY", "NOT_APPLICABLE")),
    ("TR", "TR", "ANADOLU ALUMINYUM AS", "ANADOLU ALUMINYUM AS",
     ("AE", "TR"), ("RU", "NOT_APPLICABLE")),
    ("IT", "IT", "LAMINATI PADANI SPA", "LAMINATI PADANI SPA",
     ("NO", "IS"), ("FR", "NOT_APPLICABLE")),
    ("ZA", "ZA", "HIGHVELD ROLLED PRODUCTS PTY LTD", "HIGHVELD ROLLED PRODUCTS PTY LTD",
     ("ZA", "MZ"), ("MZ", "NOT_APPLICABLE")),
    ("NO", "NO", "FJORD METALL AS", "FJORD METALL AS",
     ("NO",), ("IS", "NOT_APPLICABLE")),
    ("CN", "CN", "HUADONG ALUMINUM FOIL CO LTD", "HUADONG ALUMINUM FOIL CO LTD",
     ("CN",), ("NOT_APPLICABLE",)),
    ("VN", "VN", "SAIGON METAL TRADING CO", "UNKNOWN",
     ("CN", "IN"), ("MY", "NOT_APPLICABLE")),
)

# CBP Schedule D ports (New York/Newark, Baltimore, Norfolk, Charleston, Savannah, Miami,
# New Orleans, Los Angeles, Long Beach, Seattle, Blaine, Detroit, Buffalo, Champlain, Chicago,
# Houston, Laredo, El Paso).
PORTS = ("1001", "4601", "1303", "1401", "1601", "1703", "5201", "2002", "2704", "2709",
         "3001", "3004", "3801", "0901", "0712", "3901", "5301", "2304", "2402")

# Entry types that need a license (guide section 6); FZ goes to the FT (e214) file.
ENTRY_TYPES = (("01", 80), ("FZ", 8), ("03", 3), ("31", 3), ("32", 2), ("34", 2), ("38", 2))

# One error per erroneous application; every one of them rejects the application (severity
# ERROR). A101 is an XSD violation (a date that does not exist), the others are value rules.
ERROR_KINDS = ("A130", "A120", "A123", "A124", "A140", "A150", "A160", "A101")


NOT_GROUNDED = {"UNKNOWN", "NOT_APPLICABLE"}


def has_54_record(line: dict[str, str | None]) -> bool:
    """Whether a licensed line gets a 54 record (ACE-RECORDS.md, contract 1.1): a country in
    each field, the second-largest smelt country alone may be NOT_APPLICABLE (spaces); UNKNOWN
    anywhere, or NOT_APPLICABLE as largest smelt or cast country, has no grounded form. Every
    generated import date is after 2023-04-10, so the record is always due."""
    return (line["smelt_country_largest"] not in NOT_GROUNDED
            and line["cast_country"] not in NOT_GROUNDED
            and line["smelt_country_second"] != "UNKNOWN")


def generator_fingerprint() -> str:
    """Digest of this script, the covered list and the CSV columns: a file made by another
    version is stale."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(COVERED_CSV.read_bytes())
    digest.update(",".join(ALL_COLUMNS).encode())
    return digest.hexdigest()


def load_covered() -> list[tuple[str, str, str]]:
    with open(COVERED_CSV, encoding="utf-8", newline="") as fh:
        return [(r["hts10"], r["description"], r["product_group"]) for r in csv.DictReader(fh)]


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def luhn_digit(digits: str) -> str:
    """A mod-10 check digit (the gateway checks only the shape of an entry number)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def amount(rng: random.Random, low: float, high: float, decimals_choice: bool) -> str:
    """A quantity: mostly whole kilograms, sometimes with 1 or 3 decimals."""
    value = rng.uniform(low, high)
    if not decimals_choice:
        return str(round(value))
    places = rng.choice((1, 3))
    return f"{value:.{places}f}"


# One application: (application fields, [line fields]), keyed by the gateway's attribute
# names (model.APPLICATION_FIELDS / LINE_FIELDS), values exactly as the file carries them;
# None for an optional field that is absent.
Record = tuple[dict[str, str | None], list[dict[str, str | None]]]


class Generator:
    def __init__(self, seed: int, as_of: date, filer_code: str) -> None:
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.filer_code = filer_code
        self.covered = load_covered()
        types, weights = zip(*ENTRY_TYPES, strict=True)
        self.entry_types = types
        self.entry_weights = weights

    def application(self, n_lines: int, error: str | None) -> Record:
        """The content of one application. The format writers below only render it, so XML
        and CSV of one seed carry the same values (and draw the same random numbers)."""
        rng = self.rng
        origin, export, exporter, manufacturer, largest_opts, second_opts = rng.choice(SUPPLIERS)
        entry_type = rng.choices(self.entry_types, self.entry_weights)[0]
        port = rng.choice(PORTS)
        import_date = self.as_of + timedelta(days=rng.randint(2, 30))
        export_date = import_date - timedelta(days=rng.randint(2, 35))
        if error == "A150":
            export_date = import_date + timedelta(days=rng.randint(1, 5))
        import_text = import_date.isoformat()
        if error == "A101":
            import_text = f"{import_date.year}-02-30"  # not a date: XSD violation
        port_text = port[:3] if error == "A160" else port
        err_line = rng.randint(1, n_lines) if error else 0

        entry_number = None
        if entry_type != "FZ" and rng.random() < 0.3:
            digits = f"{rng.randrange(10**7):07d}"
            entry_number = f"{self.filer_code}{digits}{luhn_digit(digits)}"
        app = {
            "entry_type": entry_type,
            "entry_number": entry_number,
            "importer": rng.choice(IMPORTERS),
            "exporter": exporter,
            "manufacturer": manufacturer,
            "country_of_origin": origin,
            "country_of_export": export,
            "expected_export_date": export_date.isoformat(),
            "expected_import_date": import_text,
            "port_of_entry": port_text,
        }
        lines = []
        for no in range(1, n_lines + 1):
            hts, description, group = rng.choice(self.covered)
            largest = rng.choice(largest_opts)
            second = rng.choice(second_opts)
            if second == largest:
                second = "NOT_APPLICABLE"
            if rng.random() < 0.03:  # product of secondary (recycled) aluminum only
                largest = second = "NOT_APPLICABLE"
            cast = origin
            qty_low, qty_high = QTY_BY_GROUP.get(group, DEFAULT_QTY)
            quantity = amount(rng, qty_low, qty_high, rng.random() < 0.2)
            price_low, price_high = PRICE_BY_GROUP.get(group, DEFAULT_PRICE)
            value = f"{float(quantity) / 1000 * rng.uniform(price_low, price_high):.2f}"
            if no == err_line:
                if error == "A130":
                    hts = hts[:8]
                elif error == "A120":
                    cast = "XX"
                elif error == "A123":
                    largest = second = origin
                elif error == "A124":
                    cast = "UNKNOWN"
                elif error == "A140":
                    quantity = "-" + quantity
            lines.append({
                "line_no": str(no),
                "hts": hts,
                "description": description if rng.random() < 0.6 else None,
                "smelt_country_largest": largest,
                "smelt_country_second": second,
                "cast_country": cast,
                "quantity_kg": quantity,
                "value_usd": value,
            })
        return app, lines


# --- the two formats ---------------------------------------------------------------------


class XmlWriter:
    """Guide section 3: elements in model order, an absent optional field has no element."""

    def __init__(self, fh: TextIO, submission_id: str, as_of: date) -> None:
        self.fh = fh
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n'
                 f'<LicenseSubmission xmlns="{NS}" schemaVersion="1.0">\n'
                 "  <Header>\n"
                 f"    <SubmissionId>{submission_id}</SubmissionId>\n"
                 f"    <Created>{as_of.isoformat()}T06:00:00-05:00</Created>\n"
                 "  </Header>\n")

    def application(self, ref: str, record: Record) -> None:
        app, lines = record
        out = [f'  <Application ref="{xml_escape(ref)}">\n']
        for attr, tag in APPLICATION_FIELDS:
            if app[attr] is not None:
                out.append(f"    <{tag}>{xml_escape(app[attr])}</{tag}>\n")  # type: ignore[arg-type]
        for line in lines:
            out.append(f'    <Product line="{line["line_no"]}">\n')
            for attr, tag in LINE_FIELDS:
                if line[attr] is not None:
                    out.append(f"      <{tag}>{xml_escape(line[attr])}</{tag}>\n")  # type: ignore[arg-type]
            out.append("    </Product>\n")
        out.append("  </Application>\n")
        self.fh.write("".join(out))

    def close(self) -> None:
        self.fh.write("</LicenseSubmission>\n")


class CsvWriter:
    """Guide section 4: RFC 4180 (CRLF, quotes only where needed), header row of
    ``parse.csv_file.ALL_COLUMNS``, one row per line, an absent optional field an empty cell."""

    def __init__(self, fh: TextIO, submission_id: str, as_of: date) -> None:
        del as_of  # the CSV form has no creation time
        self.writer = csv.writer(fh, lineterminator="\r\n")
        self.writer.writerow(ALL_COLUMNS)
        self.submission_id = submission_id

    def application(self, ref: str, record: Record) -> None:
        app, lines = record
        fixed = {"submission_id": self.submission_id, "application_ref": ref, **app}
        self.writer.writerows(
            ["" if (v := (fixed[c] if c in fixed else line[c])) is None else v
             for c in ALL_COLUMNS]
            for line in lines)

    def close(self) -> None:
        pass


def content_digest(digest: hashlib._Hash, ref: str, record: Record) -> None:
    """Feed one application's content (not its rendering) to the content digest."""
    app, lines = record
    digest.update(repr((ref, sorted(app.items()), [sorted(ln.items()) for ln in lines]))
                  .encode("utf-8"))


def generate(lines: int, per_app: int, out_path: Path, seed: int, as_of: date,
             error_rate: float, filer_code: str = "BNC", fmt: str = "xml") -> dict[str, object]:
    if lines < 1 or not 1 <= per_app <= 999:
        raise SystemExit("--lines must be >= 1 and --lines-per-app between 1 and 999")
    if fmt not in FORMATS:
        raise SystemExit(f"--format must be one of {', '.join(FORMATS)}")
    gen = Generator(seed, as_of, filer_code)
    n_apps = -(-lines // per_app)
    n_errors = round(n_apps * error_rate)
    if error_rate > 0 and n_errors == 0 and n_apps >= 2:
        n_errors = 1  # a small file still exercises the path with findings
    pick = random.Random(seed + 1)
    erroneous = dict(zip(sorted(pick.sample(range(n_apps), n_errors)),
                         (ERROR_KINDS[i % len(ERROR_KINDS)] for i in range(n_errors)),
                         strict=True))
    submission_id = f"BENCH-{lines}-S{seed}"[:35]
    kinds: Counter[str] = Counter()
    ae_apps = ae_lines = ae_54 = ft_apps = 0
    ae_ports: set[str] = set()
    ft_ports: set[str] = set()
    content = hashlib.sha256(f"{submission_id}|{lines}|{per_app}".encode())

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    # newline="" for CSV: the csv module writes its own CRLF; "\n" for XML as before.
    with open(tmp, "w", encoding="utf-8", newline="\n" if fmt == "xml" else "",
              buffering=1 << 20) as fh:
        writer = (XmlWriter if fmt == "xml" else CsvWriter)(fh, submission_id, as_of)
        remaining = lines
        for index in range(n_apps):
            n_lines = min(per_app, remaining)
            remaining -= n_lines
            error = erroneous.get(index)
            ref = f"PO-{seed}-{index + 1:07d}"
            record = gen.application(n_lines, error)
            writer.application(ref, record)
            content_digest(content, ref, record)
            entry_type, port = record[0]["entry_type"], record[0]["port_of_entry"]
            if error:
                kinds[error] += 1
            elif entry_type == "FZ":
                ft_apps += 1
                ft_ports.add(str(port))
            else:
                ae_apps += 1
                ae_lines += n_lines
                ae_54 += sum(map(has_54_record, record[1]))
                ae_ports.add(str(port))
        writer.close()
    tmp.replace(out_path)

    meta = {
        "file": out_path.name,
        "format": fmt,
        "bytes": out_path.stat().st_size,
        "lines": lines,
        "lines_per_app": per_app,
        "seed": seed,
        "as_of": as_of.isoformat(),
        "submission_id": submission_id,
        "error_rate": error_rate,
        "generator_sha256": generator_fingerprint(),
        # The same for the XML and the CSV of one seed: what was generated, not how it is spelt.
        "content_sha256": content.hexdigest(),
        "error_kinds": dict(sorted(kinds.items())),
        "expected": {
            "status": "PARTIAL" if n_errors else "ACCEPTED",
            "applications": n_apps,
            "licensed": n_apps - n_errors,
            "not_required": 0,
            "rejected": n_errors,
            # ACE files (ACE-RECORDS.md): AE = A, per port block B..Y, per application a 10
            # record and per covered line 40/50/52 and a 54 where its detail has a grounded form
            # (contract 1.1), then Z; FT = A, B, one FT60 each, Y, Z.
            "ae_licenses": ae_apps,
            "ae_records": (2 + 2 * len(ae_ports) + ae_apps + 3 * ae_lines + ae_54)
            if ae_apps else 0,
            "ft_licenses": ft_apps,
            "ft_records": (2 + 2 * len(ft_ports) + ft_apps) if ft_apps else 0,
        },
    }
    meta_path = out_path.with_name(out_path.name + ".meta.json")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, required=True, help="product lines in the file")
    parser.add_argument("--lines-per-app", type=int, default=20,
                        help="product lines per application (default 20)")
    parser.add_argument("--out", type=Path, required=True, help="output file")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="xml or csv (default: csv when --out ends in .csv, else xml)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 12, 1),
                        help="processing date the file is made for (default 2026-12-01)")
    parser.add_argument("--error-rate", type=float, default=0.01,
                        help="fraction of applications with one error (default 0.01)")
    args = parser.parse_args(argv)
    fmt = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "xml")
    meta = generate(args.lines, args.lines_per_app, args.out, args.seed, args.as_of,
                    args.error_rate, fmt=fmt)
    exp = meta["expected"]
    print(f"{args.out} ({fmt}): {meta['lines']} lines, {exp['applications']} applications "  # type: ignore[index]
          f"({exp['rejected']} with an error), {meta['bytes'] / 1e6:.1f} MB",  # type: ignore[index]
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
