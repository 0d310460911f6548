"""A test seam for the license lifecycle's outputs, independent of how a file spells it.

The run's outputs of corrections, cancellations, low-value and registered licenses (acks,
ACE files, the changes report, their crash guarantees) are tested on plain contract-1.0
files whose first product line's ``Description`` says what the application is:

- ``CORRECTS A26000001``: a correction of that license (``corrects``);
- ``CANCEL A26000003 <reason>``: a cancellation of that license (no fields, no lines);
- ``LOW VALUE``: a low-value application (``kind="LOW_VALUE"``);
- ``REGISTERED CAIM12345``: a registered license's number (``LicenseNumber``).

``install()`` wraps the decision core's ``decide`` so that each staged application marked so
becomes what the parsers make of ``corrects``, ``<Cancellation>``, ``kind`` and
``LicenseNumber`` (contract 1.1) before it is decided: the decisions, the ledger and every
writer are the gateway's own. Run as a script, it is ``aim-gateway`` with the seam installed
(the crash tests' subprocesses): ``python tests/lifecycle_shim.py run --once ...``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from gateway.model import Application, LicenseKind
from gateway.validate.staging import StagedApplication

MARK = re.compile(r"(CORRECTS|CANCEL|REGISTERED) ([A-Z0-9]{1,10})(?: (.+))?|(LOW VALUE)")


def as_marked(item: StagedApplication) -> StagedApplication:
    """``item`` as the application its first line's description marks it to be."""
    app = item.app
    text = app.lines[0].description if app.lines else None
    found = MARK.fullmatch(text or "")
    if found is None:
        return item
    what, number, reason, low_value = found.groups()
    if low_value:
        app.kind = LicenseKind.LOW_VALUE
    elif what == "CORRECTS":
        app.corrects = number
    elif what == "REGISTERED":
        app.license_number = number
    else:  # a cancellation: a ref, a license number and a reason, nothing else
        item.app = Application(ref=app.ref, source_line=app.source_line, cancel=True,
                               license_number=number, reason=reason)
        item.findings = []
        item.lines = []
        item.exempt = False
    return item


def wrap(real: Any) -> Any:
    """The decision core's ``decide``, deciding each item ``as_marked``."""
    if getattr(real, "lifecycle_shim", False):
        return real

    def decide(items: Iterable[StagedApplication], *args: Any,
               **kwargs: Any) -> Iterator[Any]:
        return real((as_marked(item) for item in items), *args, **kwargs)

    decide.lifecycle_shim = True  # type: ignore[attr-defined]
    return decide


def install() -> None:
    from gateway.licensing import pipeline

    pipeline.decide = wrap(pipeline.decide)


if __name__ == "__main__":
    install()
    from gateway.cli import main

    sys.exit(main(sys.argv[1:]))
