"""Daphne as ``runmarket`` and ``runweb`` run it, with deadlines for peers that go quiet.

Twisted's HTTP channel only has an idle timer, reset by every byte that arrives: a client
sending one header byte a minute (slowloris) holds its connection, its buffers and its
slot in the listen queue for ever, and one that stops reading a stream makes the server
buffer every later event in memory. Two deadlines close both (issue 12):

- a request must arrive whole, head and body, within ``HTTP_RECEIVE_SECONDS`` of its first
  byte; otherwise it is answered 408 in the API's error shape and the connection closed;
- a response (a stream's events, a WebSocket's frames) whose output the client has not
  drained for ``HTTP_WRITE_STALL_SECONDS`` is cut off, which ends the stream as a
  disconnect would and gives back its per-key stream slot.

Idle keep-alive connections keep Twisted's own timer (a minute without a byte), and
WebSocket peers that stop answering pings are closed by autobahn (Daphne's ping timeout).
"""
from __future__ import annotations

import json

from django.conf import settings

from wire.frames import MAX_FRAME_BYTES

# Daphne's default backlog of 50 resets connections in a burst of stream opens
DEFAULT_BACKLOG = 2048
# how long a connection answered 408 is still read from before it is closed
LINGER_SECONDS = 2


def serve(host: str, port: int, *, backlog: int = DEFAULT_BACKLOG) -> None:
    """Run Daphne on ``host:port`` until the reactor stops."""
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server

    from marketplace.asgi import application

    _guard_daphne_connections(settings.HTTP_RECEIVE_SECONDS, settings.HTTP_WRITE_STALL_SECONDS)
    Server(
        application=application,
        endpoints=[f"{e}:backlog={backlog}" for e in build_endpoint_description_strings(host=host, port=port)],
        verbosity=0,
        # a node's result comes up its socket as one frame: Daphne's 1 MiB default would cut
        # off every job with a larger output (and the node would offer it again for ever)
        websocket_max_message_size=MAX_FRAME_BYTES,
        websocket_max_frame_size=MAX_FRAME_BYTES,
    ).run()


def request_timeout_response(seconds: float) -> bytes:
    body = json.dumps({"error": {
        "status": 408,
        "title": "Request Timeout",
        "detail": f"the request did not arrive whole within {seconds:g} seconds",
        "code": "request_timeout",
    }}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


def _guard_daphne_connections(receive_seconds: float, write_stall_seconds: float) -> None:
    """Give every connection Daphne accepts the two deadlines, and TCP_NODELAY.

    Twisted leaves Nagle on: a response written in two parts (head, then body) then waits
    for the client's delayed ACK, up to 40 ms a request on keep-alive connections
    (ENVIRONMENT.md measured the same stall on the Infernet node).
    """
    from daphne import http_protocol

    factory = http_protocol.HTTPFactory
    if getattr(factory.buildProtocol, "guarded", None) == (receive_seconds, write_stall_seconds):
        return
    build = getattr(factory.buildProtocol, "unguarded", factory.buildProtocol)

    def build_protocol(self, addr):
        protocol = build(self, addr)
        # Twisted hands out a proxy that picks HTTP/1.1 or HTTP/2 on the first bytes; the
        # HTTP/1.1 channel behind it is what the transport calls and what parses requests
        _PeerDeadlines(getattr(protocol, "_channel", protocol), receive_seconds, write_stall_seconds)
        return protocol

    build_protocol.guarded = (receive_seconds, write_stall_seconds)
    build_protocol.unguarded = build
    factory.buildProtocol = build_protocol


class _PeerDeadlines:
    """Wraps one Twisted HTTP channel's hooks; the channel keeps working as before."""

    def __init__(self, channel, receive_seconds: float, write_stall_seconds: float) -> None:
        from twisted.internet import reactor

        self.channel = channel
        self.call_later = reactor.callLater
        self.receive_seconds = receive_seconds
        self.write_stall_seconds = write_stall_seconds
        self.receiving = None  # the pending receive deadline, while a request is arriving
        self.stalled = None  # the pending write deadline, while the client is not reading
        self.timed_out = False  # answered 408: what the client still sends is read and dropped

        connection_made = channel.connectionMade
        data_received = channel.dataReceived
        all_content_received = channel.allContentReceived
        pause_producing = channel.pauseProducing
        resume_producing = channel.resumeProducing
        connection_lost = channel.connectionLost

        def made():
            connection_made()
            channel.transport.setTcpNoDelay(True)

        def received(data):
            if self.timed_out:
                return
            # a request's first byte starts its deadline; bytes of a request already handed to
            # the application (a WebSocket's frames) or after the deadline fired start nothing
            if self.receiving is None and not channel._handlingRequest and channel.transport.connected:
                self.receiving = self.call_later(self.receive_seconds, self._too_slow_to_send)
            data_received(data)

        def arrived():
            self._cancel_receiving()
            all_content_received()

        def paused():
            # the transport's buffer is full: the client has stopped reading what we write
            if self.stalled is None:
                self.stalled = self.call_later(self.write_stall_seconds, self._too_slow_to_read)
            pause_producing()

        def resumed():
            self._cancel_stalled()
            resume_producing()

        def lost(reason):
            self._cancel_receiving()
            self._cancel_stalled()
            connection_lost(reason)

        channel.connectionMade = made
        channel.dataReceived = received
        channel.allContentReceived = arrived
        channel.pauseProducing = paused
        channel.resumeProducing = resumed
        channel.connectionLost = lost

    def _too_slow_to_send(self) -> None:
        self.receiving = None
        self.timed_out = True
        transport = self.channel.transport
        transport.write(request_timeout_response(self.receive_seconds))
        # Closing a socket with unread bytes in it sends a reset, which makes the client's
        # kernel drop the answer before it is read: send the answer and our FIN, go on reading
        # (and dropping) what the client still sends, and close a moment later (a lingering
        # close, as nginx and Apache do)
        transport.loseWriteConnection()
        self.call_later(LINGER_SECONDS, transport.abortConnection)

    def _too_slow_to_read(self) -> None:
        self.stalled = None
        self.channel.transport.abortConnection()

    def _cancel_receiving(self) -> None:
        if self.receiving is not None:
            if self.receiving.active():
                self.receiving.cancel()
            self.receiving = None

    def _cancel_stalled(self) -> None:
        if self.stalled is not None:
            if self.stalled.active():
                self.stalled.cancel()
            self.stalled = None
