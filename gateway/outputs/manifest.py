"""The manifest beside a file for the transmitter (ACE-RECORDS.md, "General"; guide 5.1b): a
JSON document naming the file, its SHA-256, its record count, the licenses in it and the
submission it came from, so that the transmitter and an auditor can check the file.

It is written after its data file: a manifest always describes a file already in place. It
holds no clock time, so that a rerun after a crash writes the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gateway.storage import atomic_write

MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(data_file: Path) -> Path:
    return data_file.with_name(data_file.name + MANIFEST_SUFFIX)


@dataclass(frozen=True)
class Manifest:
    """What the transmitter and an auditor check a finished file against."""

    file_name: str
    sha256: str
    record_count: int  # ACE: every line, envelope included; changes report: the changes
    licenses: tuple[str, ...]  # in file order
    source: dict[str, str]  # file_id, file_name, partner, submission_id
    application_id: str | None = None  # ACE files only: AE or FT

    def to_json(self) -> bytes:
        keys = ("file_name", "sha256", "record_count", "application_id", "licenses", "source")
        # json writes the tuple as a list; a changes report has no application id.
        document = {key: getattr(self, key) for key in keys if getattr(self, key) is not None}
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    def write_beside(self, data_file: Path) -> None:
        atomic_write(manifest_path(data_file), self.to_json())
