"""An SFTP server that refuses one write: OpenSSH's own ``sftp-server`` behind a relay that
answers the first write of a full piece (32 KiB: the first of an upload of more than one
piece) with a failure status, without passing it on, and passes everything else through.
The pieces after it are written: the file ends up with its full size and a hole where the
refused piece belonged, what a server whose disk filled for a moment (or a quota, or an I/O
error) leaves. Once only: the first such write after ``flag_dir/armed`` exists takes that
file away.

With ``flag_dir/reorder`` present it also takes each REMOVE after the request that follows
it, as a server that does not keep the order of two requests on one name would (the
gateway's ``Requests.create`` sends a removal and a create together).

With ``flag_dir/replant`` present (two lines: a path, and a link target) it passes on the
REMOVE of that path, waits for the real server's answer to it, then plants a link to the
target there before it passes on the next request: a partner re-planting a link between the
gateway's removal of its temp name and the exclusive create (once; the file is then
removed).

sshd runs it as the SFTP subsystem (tests/sftp_server.py ``SshServer(subsystem=...)``):
``python faulty_sftp_server.py FLAG_DIR``.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO

REAL = "/usr/lib/openssh/sftp-server"
CMD_WRITE, CMD_REMOVE, CMD_STATUS = 6, 13, 101
SSH_FX_FAILURE = 4
PIECE = 32 * 1024  # a write this long is one piece of a longer upload


def read_packet(stream: BinaryIO) -> bytes | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (length,) = struct.unpack(">I", head)
    body = stream.read(length)
    return head + body if len(body) == length else None


def status(request_id: int, code: int, message: bytes) -> bytes:
    body = struct.pack(">BIII", CMD_STATUS, request_id, code, len(message)) + message + \
        struct.pack(">I", 0)
    return struct.pack(">I", len(body)) + body


def main() -> None:
    armed = Path(sys.argv[1]) / "armed"
    server = subprocess.Popen([REAL], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdin is not None and server.stdout is not None
    out, lock = sys.stdout.buffer, threading.Lock()
    answered = threading.Condition()
    answered_ids: set[int] = set()

    def answers() -> None:
        assert server.stdout is not None
        while (packet := read_packet(server.stdout)) is not None:
            with lock:
                out.write(packet)
                out.flush()
            with answered:
                answered_ids.add(struct.unpack_from(">I", packet, 5)[0])
                answered.notify_all()

    threading.Thread(target=answers, daemon=True).start()
    reorder = (Path(sys.argv[1]) / "reorder").exists()
    replant = Path(sys.argv[1]) / "replant"
    held: bytes | None = None  # a REMOVE, passed on after the next request
    while (packet := read_packet(sys.stdin.buffer)) is not None:
        kind, request_id = packet[4], struct.unpack_from(">I", packet, 5)[0]
        if reorder and kind == CMD_REMOVE and held is None:
            held = packet
            continue
        if kind == CMD_REMOVE and replant.exists():
            (path_length,) = struct.unpack_from(">I", packet, 9)
            name, target = replant.read_text().splitlines()
            if packet[13:13 + path_length] == name.encode():
                replant.unlink()
                server.stdin.write(packet)
                server.stdin.flush()
                with answered:  # the removal done (or refused) before the link is planted
                    answered.wait_for(lambda wanted=request_id: wanted in answered_ids,
                                      timeout=10)
                os.symlink(target, name)
                continue
        if kind == CMD_WRITE:
            (handle_length,) = struct.unpack_from(">I", packet, 9)
            (data_length,) = struct.unpack_from(">I", packet, 9 + 4 + handle_length + 8)
            if data_length == PIECE and _disarm(armed):
                with lock:
                    out.write(status(request_id, SSH_FX_FAILURE, b"No space left on device"))
                    out.flush()
                continue
        server.stdin.write(packet)
        if held is not None:
            server.stdin.write(held)
            held = None
        server.stdin.flush()
    server.stdin.close()
    server.wait()


def _disarm(armed: Path) -> bool:
    try:
        armed.unlink()
    except FileNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
