"""What the two HTTP servers of the gateway (the admin page, ``serve``'s monitoring
endpoints) share: the URL a server is reached on, and which ``Host`` headers it answers.

A page of another site can make a browser on this machine send requests to a loopback port
(DNS rebinding: evil.com re-resolved to 127.0.0.1), and then read the answers as its own
origin; what gives it away is the ``Host: evil.com`` it must send. So a server bound to
loopback answers only the loopback names (and the address it was told to serve on), with any
port; one serving other machines (``[web] allow_remote``) answers any name.
"""

from __future__ import annotations

import re
from typing import Any

# A name or an IPv4 address, or an IPv6 address in brackets; then at most a port. Nothing
# else ("127.0.0.1.evil.com", "[::1].evil.com", "a@b", a second port) is one of ours.
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MISDIRECTED = ("421 Misdirected Request: this server answers to a loopback address only "
               "(open it as http://127.0.0.1:PORT/ or http://localhost:PORT/)")


def host_allowed(header: str | None, served_on: str, allow_remote: bool = False) -> bool:
    """Whether a request with this ``Host`` header is answered by a server bound to
    ``served_on``; a missing or malformed header is not (every browser sends one)."""
    if allow_remote:
        return True
    found = _HOST.fullmatch(header or "")
    if found is None:
        return False
    name = found["name"].lower().strip("[]")
    return name in LOOPBACK_NAMES or name == served_on.lower().strip("[]")


def server_url(server: Any) -> str:
    """The URL a bound waitress server answers on (IPv6 in brackets)."""
    host = server.effective_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{server.effective_port}/"
