"""Country codes as the AIM guide writes them: ISO 3166-1 alpha-2, and the two words a smelt
or cast country may be instead. Shared by the mappings (which translate a partner's words into
them) and the rules (which check them)."""

from __future__ import annotations

import pycountry

UNKNOWN = "UNKNOWN"
NOT_APPLICABLE = "NOT_APPLICABLE"

# The ISO 3166-1 alpha-2 codes, from pycountry's copy of the ISO list (kept current by release).
ISO_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
