"""Ports raylive picks for the listeners it starts later: never one an outgoing connection may take."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from raylive.launcher.redis_server import LISTEN_PORTS, free_port

pytestmark = pytest.mark.timeout(30)


def test_listener_ports_are_free_and_below_the_ephemeral_range() -> None:
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert all(LISTEN_PORTS[0] <= p <= LISTEN_PORTS[1] < ephemeral_low for p in ports)
    assert len(set(ports)) == len(ports)  # several are picked before any is bound
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # and free when given
