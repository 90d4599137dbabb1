"""Local notification receivers for the tests: a JSON webhook, an SMTP server, one that refuses, one that hangs.

Real sockets on 127.0.0.1 with ports the kernel picks (tests run side by side), each recording
what arrived, so a test can assert the message a person would have got.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any


class JsonReceiver:
    """An HTTP server that records every JSON body POSTed to it (Apprise's `json://` sends one per message)."""

    def __init__(self, port: int = 0) -> None:
        self.got: list[dict[str, Any]] = []
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                outer.paths.append(self.path)
                outer.got.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1, no TLS, accepting any login: the `mailto://` channel's server."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.got: list[str] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                outer.got.append(envelope.content.decode("utf-8", "replace"))
                return "250 OK"

        def accept(server: Any, session: Any, envelope: Any, mechanism: Any, auth_data: Any) -> AuthResult:
            return AuthResult(success=True)

        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=free_port(), auth_require_tls=False, authenticator=accept
        )
        self.controller.start()
        self.port = self.controller.port

    def close(self) -> None:
        self.controller.stop()


class HangingServer:
    """Accepts connections and never answers: a channel that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)  # held open, never read, never answered

    def close(self) -> None:
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


def free_port() -> int:
    """A port nothing listens on (bound, then released): connecting to it is refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextlib.contextmanager
def receivers() -> Iterator[tuple[JsonReceiver, SmtpReceiver]]:
    j, m = JsonReceiver(), SmtpReceiver()
    try:
        yield j, m
    finally:
        j.close()
        m.close()
