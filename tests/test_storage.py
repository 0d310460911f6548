"""Storage (gateway/storage.py), imported directly: ``safe_name`` (a partner's name made a
local file name), ``Layout`` (where the gateway keeps files) and the durable writes. Real
files on tmp_path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import ProjectConfig

from gateway.config import load_config
from gateway.storage import (
    Layout,
    SpooledOutput,
    atomic_write,
    durable_move,
    open_new,
    safe_name,
    temp_name,
)


def tagged(name: str) -> str:
    """The ``~`` tag ``safe_name`` puts after a name it had to change: its exact name's hash."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


@pytest.mark.parametrize("name", ["a.xml", "ACME_2026-12-01.v2.csv", "x" * 120, "-", "a..b"])
def test_a_clean_name_is_kept_as_it_is(name: str) -> None:
    assert safe_name(name) == name


@pytest.mark.parametrize(("name", "clean"), [
    ("a b.xml", "a_b.xml"),
    ("a:b.xml", "a_b.xml"),
    ("../../etc/passwd", "passwd"),
    ("x\\evil.xml", "evil.xml"),
    ("/abs/path/a.xml", "a.xml"),
    (".hidden.xml", "hidden.xml"),
    ("...", "unnamed"),
    ("", "unnamed"),
    ("dir/", "unnamed"),
    ("b\x01.xml", "b_.xml"),
    ("bestellung-ü.csv", "bestellung-_.csv"),
    ("a\udcff.xml", "a_.xml"),  # an undecodable byte from a server (surrogateescape)
])
def test_a_changed_name_is_cleaned_and_tagged_with_its_hash(name: str, clean: str) -> None:
    assert safe_name(name) == f"{clean}~{tagged(name)}"


def test_two_names_that_clean_alike_stay_apart_and_never_meet_a_clean_one() -> None:
    names = ["a b.xml", "a:b.xml", "a?b.xml", "a_b.xml"]
    local = [safe_name(n) for n in names]
    assert len(set(local)) == len(names)
    assert local[-1] == "a_b.xml"  # cleaning never yields "~": no tagged name is a clean one
    assert all("~" in n for n in local[:-1])


@pytest.mark.parametrize("name", ["x" * 121, "y" * 300 + ".xml", "a b" * 100 + ".csv"])
def test_a_long_name_keeps_its_start_and_its_end(name: str) -> None:
    local = safe_name(name)
    clean = name.replace(" ", "_")
    assert len(local) <= 120
    assert local == f"{clean[:100]}~{tagged(name)}~{clean[-10:]}"


@pytest.mark.parametrize("name", ["a/b.xml", "../x", "a\x00b", "\\\\server\\share\\f.xml"])
def test_a_safe_name_is_never_a_path_nor_hidden(name: str) -> None:
    local = safe_name(name)
    assert "/" not in local and "\\" not in local and "\x00" not in local
    assert not local.startswith(".") and local not in ("", ".", "..")


def test_the_layout_of_a_config(tmp_path: Path) -> None:
    config = load_config(ProjectConfig(tmp_path).partner("acme").write())
    layout = Layout.of(config)
    data, outbox = tmp_path / "data", tmp_path / "outbox"
    assert (layout.data_dir, layout.outbox_dir) == (data, outbox)
    assert layout.work_tmp == data / "work" / "tmp"
    assert layout.received == data / "work" / "received"
    assert layout.archive("acme", "2026-12-01T10:00:00Z") == data / "archive" / "acme" / "2026-12"
    assert layout.failed("acme") == data / "failed" / "acme"
    assert layout.ack_store("acme") == data / "acks" / "acme"
    assert layout.partner_outbox("acme") == outbox / "acme"
    assert layout.ace_outbox == outbox / "ace"


def test_the_layout_follows_the_configured_folders(tmp_path: Path) -> None:
    config = load_config(ProjectConfig(tmp_path).set("gateway", data_dir="d", outbox_dir="o")
                         .partner("acme").write())
    assert Layout.of(config) == Layout(tmp_path / "d", tmp_path / "o")


def test_a_temp_name_is_hidden_and_this_processs_own() -> None:
    tmp = temp_name(Path("/x/out/a.ack.xml"))
    assert tmp == Path(f"/x/out/.a.ack.xml.{os.getpid()}.tmp")


@pytest.mark.parametrize("data", [b"new\n", [b"ne", b"w\n"]], ids=["bytes", "chunks"])
def test_atomic_write_replaces_the_file_and_leaves_no_temp(
        tmp_path: Path, data: bytes | list[bytes]) -> None:
    target = tmp_path / "sub" / "a.txt"
    atomic_write(target, b"old\n")
    atomic_write(target, data)
    assert target.read_bytes() == b"new\n"
    assert os.listdir(target.parent) == ["a.txt"]


def test_open_new_removes_a_leftover_or_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    tmp = tmp_path / ".a.tmp"
    tmp.symlink_to(victim)
    with open_new(tmp) as fh:
        fh.write(b"mine")
    assert victim.read_bytes() == b"keep"
    assert not tmp.is_symlink() and tmp.read_bytes() == b"mine"


def test_durable_move_makes_the_folders(tmp_path: Path) -> None:
    src = tmp_path / "a" / "f"
    src.parent.mkdir()
    src.write_bytes(b"x")
    dst = tmp_path / "b" / "c" / "f"
    durable_move(src, dst)
    assert not src.exists() and dst.read_bytes() == b"x"


@pytest.mark.parametrize("publish", [True, False], ids=["published", "discarded"])
def test_a_spooled_output_is_whole_or_absent(tmp_path: Path, publish: bool) -> None:
    target = tmp_path / "out" / "a.ack.csv"
    out = SpooledOutput(target)
    out.body.write("row 1\nrow 2\n")
    assert not target.exists()  # nothing under the final name while it streams
    if publish:
        out.publish("head\n", "tail\n")
        assert target.read_bytes() == b"head\nrow 1\nrow 2\ntail\n"
    else:
        out.discard()
    assert os.listdir(target.parent) == (["a.ack.csv"] if publish else [])
