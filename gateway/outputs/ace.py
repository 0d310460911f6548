"""ACE-style transmission files: CATAIR 80-column records for the filer's ABI channel.

The contract is ``spec/ACE-RECORDS.md``; the record layouts are transcribed in ``LAYOUTS``
(``gateway.outputs.ace_layouts``, with the record formatters built from it) and documented
in ``docs/ace-records.md``. Two kinds of file share one envelope (A, then one
B…Y block per port of entry and filer code, then Z):

- ``AE`` entry summaries: per licensed application a 10 record, then per covered product line
  40, 50, 52 (license type 28) and, for an expected import date from 2023-04-10, 54 (type 07,
  aluminum smelt and cast country detail) when the line's values have a grounded form
  (``gateway.validate.smelt_cast``: no country code for a non-country, A128 instead);
- ``FT`` FTZ admissions: per licensed ``FZ`` application one e214 FT60 "Line Reference" record
  carrying the license with reference qualifier ``ALU``.

The 54-record type 07 positions are contract 1.1's (``spec/ACE-RECORDS.md``), which follow a
third-party transcription; CBP's own CATAIR page differs (``docs/ace-records.md``, "What stays
uncertain"). They live in ``LAYOUTS["54"]`` only.

``AceFileWriter`` streams: each block's records are kept in memory while all blocks together
hold at most ``_IN_MEMORY`` bytes, and a block that would pass that goes to a dot-named spool file
beside the output; ``finish()`` concatenates them into the final file, so memory does not grow
with the number of product lines or blocks.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import IO

from gateway.caching import short_cache
from gateway.model import Application, ProductLine, line_number
from gateway.outputs.ace_layouts import (
    FTZ_RECORD,
    HEAD_RECORD,
    LICENSE_RECORD,
    LINE_BLOCK,
    LINE_BLOCK_LENGTH,
    RECORD_LENGTH,
    alpha,
    build_record,
    cached_alpha,
    clean_text,
)
from gateway.outputs.manifest import Manifest
from gateway.storage import DigestWriter, open_new, publish, sync_file, temp_name
from gateway.validate.amounts import split_plain
from gateway.validate.smelt_cast import record_due, smelt_cast_fields

ENTRY_SUMMARY = "AE"
FTZ_ADMISSION = "FT"
SMELT_CAST_DECLARATION = "07"  # 54-record type 07, aluminum smelt and cast country detail

_FTZ_TEXT_PUNCTUATION = str.maketrans("-./&,", "     ")  # FT60 description is class AN
_COPY_CHUNK = 1 << 20
# Enough open spools for a normal submission; past this the least recently used one is closed
# and reopened in append mode when needed, so hundreds of ports do not exhaust file handles.
_MAX_OPEN_SPOOLS = 200
_SPOOL_BUFFER = 64 * 1024
# Record bytes of all blocks together kept in memory, as storage.SpooledOutput keeps an ack's
# body: a small file's blocks never create, reopen and unlink a spool file each (about 0.5 ms
# of system time per created file on the bench disk, ~3 per small file: bench/bench_poll.py;
# 300 writers of 3 blocks, measured: 0.21-0.23 s CPU against 0.31-0.41 s, 2,700 opens fewer).
# One budget for the whole writer, not one per block, so thousands of ports stay bounded too.
# (SpooledOutput's body is one stream with its own limit and an always-open file; the blocks
# here share a budget and their files go through the LRU of open spools.)
_IN_MEMORY = 1 << 20


@lru_cache(maxsize=1024)
def _mmddyy(iso_date: str | None) -> str | None:
    return None if iso_date is None else date.fromisoformat(iso_date).strftime("%m%d%y")


def _scaled(amount: str | None, decimals: int) -> int | None:
    """A decimal string as an integer with ``decimals`` implied decimals, rounded half up."""
    if amount is None:
        return None
    whole, dot, fraction = amount.partition(".")
    # Hot path (two calls per product line): ASCII digits with at most one dot, no Decimal
    # arithmetic, tested first so that it returns at once (a third of _scaled's time, issue
    # 15); every other form takes _scaled_other.
    if whole.isdigit() and (fraction.isdigit() or not dot) and amount.isascii():
        fraction = fraction.ljust(decimals + 1, "0")
        return int(whole + fraction[:decimals]) + (fraction[decimals] >= "5")
    return _scaled_other(amount, decimals)


def _scaled_other(amount: str, decimals: int) -> int:
    """``_scaled`` of any other form: plain but written otherwise ("+5", " 5", ".5", "5.",
    rewritten as digits, dot, digits), else through ``Decimal``."""
    if not amount.isascii():  # never another script's digits (the rules rejected them)
        raise ValueError(f"{amount!r} is not a decimal number in ASCII digits")
    plain = split_plain(amount)
    if plain is not None:
        return _scaled(f"{plain[0] or '0'}.{plain[1] or '0'}", decimals) or 0
    try:
        scaled_decimal = Decimal(amount.strip()).scaleb(decimals)
        return int(scaled_decimal.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except (ArithmeticError, ValueError) as exc:  # decimal.Overflow is no OverflowError
        raise ValueError(f"{amount!r} is not a finite decimal number") from exc


@lru_cache(maxsize=1024)
def _smelt_cast_record(largest: str | None, second: str | None, cast: str | None) -> str:
    """The 54 type 07 record of a line and its newline, or "" when its values have no grounded
    form (the line then carries A128 in the acknowledgment)."""
    fields = smelt_cast_fields(largest, second, cast)
    if fields is None:
        return ""
    return build_record("54", declaration_type=SMELT_CAST_DECLARATION,
                        smelt_country_largest=fields[0], smelt_country_second=fields[1],
                        cast_country=fields[2]) + "\n"


def entry_summary_text(
    app: Application, lines: Sequence[ProductLine], license_number: str, filer_code: str
) -> tuple[str, int]:
    """The records of one licensed application as text (each 80 chars + newline), and their
    count: record 10, then 40, 50, 52 and (when due and grounded) 54 for each covered line."""
    # The 10 and 52 records are compiled formatters fed with alpha() fields, which are cleaned
    # and of their width by construction: what build_record checks field by field cannot go
    # wrong, and building both through build_record cost 1.0 of the 2.2 s that ACE formatting
    # took in a profiled run of 50,000 one-line applications. The values unique to an
    # application (its ref, entry number and license) skip the cache: they would only push
    # out the others.
    entry_number = app.entry_number
    parts = [HEAD_RECORD(
        cached_alpha(filer_code, 3), alpha(entry_number[3:] if entry_number else None, 8),
        cached_alpha(app.port_of_entry, 4), alpha(app.ref, 9), cached_alpha(app.entry_type, 2))]
    origin, export, export_date = _line_context(app.country_of_origin, app.country_of_export,
                                                app.expected_export_date)
    r52 = LICENSE_RECORD(alpha(license_number, 10))
    smelt_cast_due = record_due(app.expected_import_date)
    count = 1 + 3 * len(lines)
    # Per line, names bound once and no helper call that can be inlined: the loop is most of
    # ACE formatting at 20 lines per application.
    append, block, scaled, hts_field = parts.append, LINE_BLOCK, _scaled, _hts_field
    for line in lines:
        number = _line_number(line.line_no)  # ``line.number``, of the same few texts
        if number is None:
            raise ValueError(f"product line number {line.line_no!r} is not an integer")
        value_usd = scaled(line.value_usd, 0)
        quantity = scaled(line.quantity_kg, 2)
        if value_usd is None or quantity is None:
            raise ValueError(f"line {line.line_no} has no value or no quantity")
        hts = hts_field(line.hts)
        text = block(r52, number, origin, export, export_date, hts, value_usd, quantity)
        # A negative number keeps its width ("-01"): caught here like one that is too long.
        if len(text) != LINE_BLOCK_LENGTH or number < 0 or value_usd < 0 or quantity < 0:
            # Let the layout-driven builder name the field that does not fit.
            build_record("40", line_number=number)
            build_record("50", hts=hts, value_usd=value_usd, quantity=quantity)
            raise ValueError(f"a value of line {line.line_no} does not fit its record")
        append(text)
        if smelt_cast_due:
            r54 = _smelt_cast_record(line.smelt_country_largest, line.smelt_country_second,
                                     line.cast_country)
            if r54:
                append(r54)
                count += 1
    return "".join(parts), count


@short_cache(maxsize=4096)
def _line_context(origin: str | None, export: str | None,
                  export_date: str | None) -> tuple[str, str, str]:
    """The 40 record's fields that are the application's (origin, export country and date),
    as ``alpha``: one look-up an application instead of four."""
    return alpha(origin, 2), alpha(export, 2), alpha(_mmddyy(export_date), 6)


# The line numbers of a file are the same few texts ("1", "2", ...): parsed once each.
_line_number = short_cache(maxsize=1024)(line_number)


@lru_cache(maxsize=8192)
def _hts_field(hts: str | None) -> str:
    """The 50 record's HTS field: the code without its dots, as ``alpha``."""
    return alpha(hts.replace(".", "") if hts else None, 10)


def entry_summary_records(
    app: Application, lines: Sequence[ProductLine], license_number: str, filer_code: str
) -> list[str]:
    """Record 10, then 40, 50, 52 (and 54 when due) for each covered line of one application."""
    text, _ = entry_summary_text(app, lines, license_number, filer_code)
    return text.splitlines()


def ftz_record(
    app: Application, lines: Sequence[ProductLine], license_number: str, filer_code: str
) -> str:
    """The FT60 Line Reference record carrying the license of one licensed FZ application.

    The description (CBP: mandatory, class AN) is that of the first covered line that has one,
    spaces when none does. ``app`` and ``filer_code`` are not used: the FT60 has no field for
    them (the B record carries the filer); they keep the shape of ``entry_summary_records``.
    """
    del app, filer_code
    description = next((line.description for line in lines if line.description), None)
    if description is not None:
        description = clean_text(description).translate(_FTZ_TEXT_PUNCTUATION)
    # The compiled record (``build_record``'s checks hold by construction: alpha() fields).
    return FTZ_RECORD(alpha(description, 45), alpha(license_number, 22))[:-1]


def batch_header(
    site_code: str, sender_id: str, processing_date: date, file_id: str, app_id: str
) -> str:
    """The A record; the password (9-14) stays blank for the transmitter to fill."""
    return build_record("A", site_code=site_code, sender_id=sender_id,
                   processing_date=processing_date.strftime("%m%d%y"),
                   application_id=app_id, user_data=file_id)


def batch_trailer(site_code: str, sender_id: str, processing_date: date) -> str:
    """The Z record, matching the A record (else CBP condition X14)."""
    return build_record("Z", site_code=site_code, sender_id=sender_id,
                   processing_date=processing_date.strftime("%m%d%y"))


def block_header(port: str, filer_code: str, app_id: str, submission_id: str) -> str:
    """The B record of one (port of entry, filer code) block."""
    return build_record("B", port=port, filer_code=filer_code, application_id=app_id,
                   user_data=submission_id)


def block_trailer(port: str, filer_code: str, app_id: str) -> str:
    """The Y record, matching its B record (else CBP condition X32)."""
    return build_record("Y", port=port, filer_code=filer_code, application_id=app_id)


@dataclass
class _Block:
    port: str
    filer_code: str
    spool: Path
    records: int = 0
    licenses: list[str] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)  # the records while in memory
    size: int = 0  # bytes in ``chunks``
    spilled: bool = False  # the records are in ``spool`` (and any further ones go there)


class AceFileWriter:
    """Stream licensed applications into one ACE-style file; ``finish()`` publishes it."""

    def __init__(
        self, path: Path, *, app_id: str, site_code: str, sender_id: str, processing_date: date,
        file_id: str, submission_id: str, source: dict[str, str],
    ) -> None:
        if app_id not in (ENTRY_SUMMARY, FTZ_ADMISSION):
            raise ValueError(f"application identifier must be AE or FT, not {app_id!r}")
        self.path = path
        self.app_id = app_id
        self.site_code = site_code
        self.sender_id = sender_id
        self.processing_date = processing_date
        self.file_id = file_id
        self.submission_id = submission_id
        self.source = dict(source)
        self._blocks: dict[tuple[str, str], _Block] = {}  # insertion order = file order
        self._by_value: dict[tuple[str | None, str], _Block] = {}  # the same, as given
        self._open: OrderedDict[Path, IO[bytes]] = OrderedDict()  # LRU: most recent last
        self._in_memory = 0  # bytes in the blocks' ``chunks`` together
        self._closed = False

    def add(
        self, app: Application, lines: Sequence[ProductLine], license_number: str, filer_code: str
    ) -> None:
        """Spool the records of one licensed application into its port and filer block."""
        if self._closed:
            raise RuntimeError("AceFileWriter is finished or discarded")
        if self.app_id == ENTRY_SUMMARY:
            text, count = entry_summary_text(app, lines, license_number, filer_code)
        else:
            text, count = ftz_record(app, lines, license_number, filer_code) + "\n", 1
        block = self._by_value.get((app.port_of_entry, filer_code))
        if block is None:
            # Keyed by the values as written, so two spellings that print alike share one
            # block; the values as given find it again without formatting them.
            key = (cached_alpha(app.port_of_entry, 4), cached_alpha(filer_code, 3))
            block = self._blocks.get(key)
            if block is None:
                block = self._blocks[key] = _Block(*key, spool=self._spool_name(len(self._blocks)))
            self._by_value[(app.port_of_entry, filer_code)] = block
        data = text.encode("ascii")
        if block.spilled:
            self._spool(block.spool).write(data)
        else:
            block.chunks.append(data)
            block.size += len(data)
            self._in_memory += len(data)
            if self._in_memory > _IN_MEMORY:
                # The block written to goes: it holds ``data``, so the total is back within
                # the budget, and a growing block is the one that keeps coming back (O(1),
                # where looking for the largest would scan every block).
                self._spill(block)
        block.records += count
        block.licenses.append(license_number)

    def finish(self) -> Manifest | None:
        """Write A, the blocks and Z durably, then the manifest; None when nothing was added."""
        if self._closed:
            raise RuntimeError("AceFileWriter is finished or discarded")
        self._closed = True
        if not self._blocks:
            return None
        self._close_spools()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(self.path)
        written = 0
        record_count = 2 + sum(block.records + 2 for block in self._blocks.values())
        size = record_count * (RECORD_LENGTH + 1)
        try:
            with open_new(tmp) as out, DigestWriter(out.write, size) as sink:
                for chunk in self._chunks():
                    sink.put(chunk)
                    written += len(chunk)
                sha256 = sink.close()
                sync_file(out)
            # A spool that lost or gained bytes would otherwise go out unnoticed.
            if written != size:
                raise AssertionError(f"{tmp}: {written} bytes for {record_count} records")
            publish(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            self._remove_spools()  # the writer is closed either way: nothing will read them
        blocks = self._blocks.values()
        manifest = Manifest(
            file_name=self.path.name, sha256=sha256, record_count=record_count,
            licenses=tuple(lic for block in blocks for lic in block.licenses),
            application_id=self.app_id, source=self.source,
        )
        manifest.write_beside(self.path)
        return manifest

    def discard(self) -> None:
        """Remove spool and temp files; the writer cannot be used afterwards."""
        self._closed = True
        self._close_spools()
        self._remove_spools()
        temp_name(self.path).unlink(missing_ok=True)

    def _chunks(self) -> Iterator[bytes]:
        """The whole file: A, then each block's B, spooled records and Y, then Z."""
        yield _line(batch_header(self.site_code, self.sender_id, self.processing_date,
                                 self.file_id, self.app_id))
        for block in self._blocks.values():
            yield _line(block_header(block.port, block.filer_code, self.app_id,
                                     self.submission_id))
            if block.spilled:
                with open(block.spool, "rb") as spool:
                    while chunk := spool.read(_COPY_CHUNK):
                        yield chunk
            else:
                yield b"".join(block.chunks)  # one write and digest update, not one per app
            yield _line(block_trailer(block.port, block.filer_code, self.app_id))
        yield _line(batch_trailer(self.site_code, self.sender_id, self.processing_date))

    def _spool_name(self, index: int) -> Path:
        # Dot-prefixed and pid-tagged like storage.temp_name: never taken for an output.
        return self.path.with_name(f".{self.path.name}.{os.getpid()}.block{index:05d}.spool")

    def _spill(self, block: _Block) -> None:
        """Move a block's records from memory to its spool file, where the rest will go."""
        block.spilled = True  # first: a failure below still has the file removed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._spool(block.spool, new=True).write(b"".join(block.chunks))
        self._in_memory -= block.size
        block.chunks.clear()
        block.size = 0

    def _spool(self, spool: Path, *, new: bool = False) -> IO[bytes]:
        handle = self._open.get(spool)
        if handle is not None:
            self._open.move_to_end(spool)
            return handle
        if len(self._open) >= _MAX_OPEN_SPOOLS:
            self._open.popitem(last=False)[1].close()
        # 64 KiB rather than 8: a fourth of the write calls' CPU time (50,000 applications
        # over 38 blocks, measured); at most _MAX_OPEN_SPOOLS of them, 12.8 MB.
        # A new spool is created as storage.open_new creates a temp name (a link planted at the
        # predictable name is removed, never written through); a closed one is reopened to append.
        handle = self._open[spool] = (
            open_new(spool, "wb", buffering=_SPOOL_BUFFER) if new
            else open(spool, "ab", _SPOOL_BUFFER))  # noqa: SIM115 (kept open across add())
        return handle

    def _close_spools(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def _remove_spools(self) -> None:
        for block in self._blocks.values():
            block.chunks.clear()
            if block.spilled:  # the others never had a file: no unlink call for them
                block.spool.unlink(missing_ok=True)
        self._in_memory = 0


def _line(record: str) -> bytes:
    return record.encode("ascii") + b"\n"
