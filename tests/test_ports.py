"""on_free_port: a port someone takes between picking it and the server's bind is swapped."""

import socket

import pytest

from tests.support.services import PortTaken, check_port, on_free_port

pytestmark = pytest.mark.unit


def serve(port: int) -> socket.socket:
    """A server that cannot bind port 0 (like podman's -p): it binds the port it is given."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError as e:
        s.close()
        check_port(str(e))  # "[Errno 98] Address already in use"
        raise
    s.listen()
    return s


def test_a_port_taken_before_the_bind_is_retried_on_another():
    tried: list[int] = []
    with socket.socket() as squatter:

        def start(port: int) -> socket.socket:
            tried.append(port)
            if len(tried) == 1:  # another process gets there first
                squatter.bind(("127.0.0.1", port))
                squatter.listen()
            return serve(port)

        with on_free_port(start) as server:
            assert len(tried) == 2 and tried[0] != tried[1]
            assert server.getsockname()[1] == tried[1]
            with socket.create_connection(("127.0.0.1", tried[1]), timeout=5):
                pass


def test_retries_are_bounded_and_other_failures_are_not_retried():
    calls: list[int] = []

    def always_taken(port: int) -> None:
        calls.append(port)
        raise PortTaken(f"listen tcp4 127.0.0.1:{port}: bind: address already in use")

    with pytest.raises(PortTaken):
        on_free_port(always_taken, attempts=3)
    assert len(calls) == 3

    def broken(port: int) -> None:
        calls.append(port)
        raise RuntimeError("no such image")

    calls.clear()
    with pytest.raises(RuntimeError, match="no such image"):
        on_free_port(broken)
    assert len(calls) == 1
