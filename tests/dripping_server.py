"""A loopback HTTP server that never finishes its headers, for image URLs that must be cut off at their deadline
(the tests and `make soak` use it; it needs nothing but the standard library)."""

from __future__ import annotations

import socket
import threading
import time


class DrippingServer:
    """Sends its status line and headers one byte every `pause_s`, forever, and counts open connections."""

    def __init__(self, pause_s: float = 0.2) -> None:
        self.pause_s = pause_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/photo.jpg"
        self.open_connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        self.open_connections += 1
        try:
            while True:
                connection.sendall(b"H")
                time.sleep(self.pause_s)
        except OSError:
            pass
        finally:
            self.open_connections -= 1
            connection.close()

    def close(self) -> None:
        self.listener.close()
