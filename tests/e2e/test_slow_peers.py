"""Peers that go quiet do not keep what they hold (issue 12, marketplace/web_server.py).

On a real ``runmarket`` with short deadlines: a request trickled in a byte at a time (each
byte would reset Twisted's idle timer for ever) and a body that stops halfway are answered
408 in the API's error shape and closed; a client that stops reading a large answer is cut
off instead of having it buffered for it; and the market answers everyone else throughout.
"""
import contextlib
import json
import socket
import time

import pytest
import requests

from tests.support.market import start_market

DEADLINE = 2  # seconds, both deadlines
PATIENCE = 20  # how long a test keeps trickling before it calls the connection held for ever


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    running = start_market(
        tmp_path_factory.mktemp("slow-peers"),
        env={"HTTP_RECEIVE_SECONDS": str(DEADLINE), "HTTP_WRITE_STALL_SECONDS": str(DEADLINE),
             "MAX_REQUEST_BYTES": str(8 * 1024 * 1024)},
    )
    yield running
    running.stop()


def _connect(market, receive_buffer: int | None = None) -> socket.socket:
    host, port = market.url.removeprefix("http://").split(":")
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, int(port)))
    return sock


def _trickle_until_answered(sock: socket.socket, head: bytes, trickle: bytes) -> bytes:
    """Send ``head``, then ``trickle`` a byte every 0.2 s; what the server sent before closing."""
    sock.sendall(head)
    sock.settimeout(0.2)
    answer, started = b"", time.monotonic()
    for byte in trickle * 1000:
        if time.monotonic() - started > PATIENCE:
            raise AssertionError(f"still connected after {PATIENCE} s of trickling")
        try:
            sock.send(bytes([byte]))
        except OSError:  # closed under us
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    sock.settimeout(5)
    with contextlib.suppress(OSError):  # the server may reset after its answer: what came is what counts
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
    error = json.loads(body)["error"]
    assert error["status"] == 408 and error["code"] == "request_timeout", error


def _still_answers(market) -> None:
    assert requests.get(f"{market.url}/v1/billing/account", headers=market.headers(), timeout=10).status_code == 200


def test_a_request_head_trickled_in_a_byte_at_a_time_is_answered_408_and_closed(market):
    with _connect(market) as sock:
        answer = _trickle_until_answered(sock, b"GET /v1/billing/account HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: a\r\n")
    _assert_408(answer)
    _still_answers(market)


def test_a_body_that_stops_arriving_is_answered_408_and_closed(market):
    head = (
        "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {market.api_key}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    with _connect(market) as sock:
        answer = _trickle_until_answered(sock, head + b'{"model": "echo", "input": "', b"x")
    _assert_408(answer)
    _still_answers(market)


def test_each_request_on_a_kept_alive_connection_gets_its_own_deadline(market):
    request = f"GET /v1/billing/account HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {market.api_key}\r\n\r\n"
    with _connect(market) as sock:
        sock.settimeout(10)
        for _ in range(3):  # well past one deadline in all, each request whole at once
            sock.sendall(request.encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            time.sleep(DEADLINE * 0.75)


def test_a_client_that_stops_reading_a_large_answer_is_cut_off(market):
    size = 4 * 1024 * 1024
    job_id = market.submit({"model": "echo", "input": "x" * size})
    assert market.wait(job_id)["status"] == "completed"
    request = (
        f"GET /v1/jobs/{job_id}/download HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {market.api_key}\r\n\r\n"
    ).encode()
    with _connect(market, receive_buffer=4096) as sock:
        sock.sendall(request)
        time.sleep(DEADLINE + 4)  # not reading: the server's buffer stays full past the deadline
        sock.settimeout(10)
        received = 0
        with contextlib.suppress(ConnectionResetError):  # cut off: a reset ends the read
            while chunk := sock.recv(65536):
                received += len(chunk)
    assert received < size, "the whole answer was kept for a client that did not read it"
    _still_answers(market)
