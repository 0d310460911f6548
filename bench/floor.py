"""The streaming floor: what reading a submission application by application costs at least.

    python bench/floor.py FILE [--repeat 3]

Three ways through FILE, each alternating ``--repeat`` times in this process, least CPU kept:

- **parse**: ``lxml``'s pull parser with the gateway's settings (``parse.xml_file``: no
  entities, DTD or network; only the root's children reach Python), each child cleared and
  dropped once read, as the gateway does to keep its memory flat;
- **parse + XSD per application**: the same, and ``XMLSchema.validate`` of every Application
  element on its own (what the gateway must do to reject one application and keep the others,
  never holding the whole document);
- **whole document** (``bench/baseline.py``'s work): parse into one tree, validate it whole.

Nothing else: no model, no rules, no license, no output. Why: ``run_bench.py``'s ratio is
against the whole-document baseline, which holds every application in memory (770 MB at
100,000 one-line applications); the gateway streams, and the first two figures are the part
of its time no Python of its own can remove. The schema is compiled before the clock starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.parse.xml_file import _CHUNK, _REQUESTS, _ROOT_CHILDREN  # noqa: E402
from gateway.schemas import submission_schema  # noqa: E402


def stream(path: Path, schema: etree.XMLSchema | None) -> int:
    """Parse ``path`` as the gateway streams it; validate each request when ``schema``."""
    parser = etree.XMLPullParser(events=("end",), tag=_ROOT_CHILDREN, resolve_entities=False,
                                 load_dtd=False, no_network=True, huge_tree=False,
                                 remove_comments=True, remove_pis=True, collect_ids=False)
    count = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            parser.feed(chunk)
            for _, el in parser.read_events():
                root = el.getparent()
                if root is None:
                    continue
                if el.tag in _REQUESTS:
                    count += 1
                    if schema is not None:
                        schema.validate(el)
                el.clear()
                while el.getprevious() is not None:
                    del root[0]
    parser.close()
    return count


def whole(path: Path, schema: etree.XMLSchema) -> int:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    tree = etree.parse(str(path), parser)
    schema.validate(tree)
    return len(tree.getroot()) - 1  # the Header aside


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    schema = submission_schema()
    ways: dict[str, Callable[[], int]] = {
        "parse": lambda: stream(args.file, None),
        "parse + XSD per application": lambda: stream(args.file, schema),
        "whole document (bench/baseline.py)": lambda: whole(args.file, schema),
    }
    best: dict[str, float] = {}
    count = 0
    for _ in range(args.repeat):
        for name, way in ways.items():
            started = time.process_time()
            count = way()
            best[name] = min(best.get(name, float("inf")), time.process_time() - started)
    print(f"{args.file.name}: {count:,} applications, least CPU of {args.repeat} each")
    for name, seconds in best.items():
        print(f"  {name:36s} {seconds:6.2f} s  {count / seconds:9,.0f} applications/s")
    print(f"Reproduce: .venv/bin/python bench/floor.py {args.file} --repeat {args.repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
