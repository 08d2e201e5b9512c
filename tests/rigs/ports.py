"""Listening ports for servers a test starts in another process.

A port found by binding to port 0 comes from the kernel's ephemeral range, the same range every
outgoing connection and every "random free port" takes from. Between the moment a test picks such
a port and the moment the child process binds it, something else can take it: the Temporal dev
server picks its HTTP, metrics and internal service ports that way, so a stack's SCIM port picked
a second earlier was sometimes the Temporal server's by the time the stand-in bound it
("Address already in use"). Ports below the ephemeral range are never handed out by the kernel,
so a port chosen there, checked free, and never handed out twice by this process, stays ours.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_given: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default floor; other systems start higher still


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free 127.0.0.1 port outside the ephemeral range, not given out before in this process."""
    ceiling = min(_ephemeral_floor(), 32768) - 1
    for _ in range(200):
        port = random.randint(20000, ceiling)
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise RuntimeError(f"no free port between 20000 and {ceiling}")
