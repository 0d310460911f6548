"""The benchmark's baseline: lxml parse of a submission plus XSD validation, nothing else.

    python bench/baseline.py FILE [XSD]

Parses FILE with a safe parser (no entity expansion, no DTD, no network), validates the whole
tree against schemas/license-submission-1.1.xsd (the schema the gateway validates every file
against, gateway/schemas.py), and prints one JSON line with the phase times. It is what any
XML intake must do at least; ``run_bench.py`` times the gateway against it. XSD errors in the
file (the generator puts a few in on purpose) are counted, not fatal.
"""

import json
import sys
import time
from pathlib import Path

t0 = time.perf_counter()
from lxml import etree  # noqa: E402 (import time is part of the measured start-up)

xml = sys.argv[1]
xsd = sys.argv[2] if len(sys.argv) > 2 else str(
    Path(__file__).resolve().parent.parent / "schemas" / "license-submission-1.1.xsd")
parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
schema = etree.XMLSchema(etree.parse(xsd, parser))
t1 = time.perf_counter()
tree = etree.parse(xml, parser)
t2 = time.perf_counter()
valid = schema.validate(tree)
t3 = time.perf_counter()
root = tree.getroot()
print(json.dumps({"valid": valid, "xsd_errors": len(schema.error_log),
                  "root": root.tag, "children": len(root),
                  "import_and_schema_s": round(t1 - t0, 4), "parse_s": round(t2 - t1, 4),
                  "validate_s": round(t3 - t2, 4)}))
