"""A file server on 127.0.0.1 for download paths (tests stay offline): serves a folder,
records the paths asked for, and can be pointed at through ``$SAM2_PLUGINS_MIRROR``."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from pathlib import Path
from typing import List


class FileServer:
    """Serve ``folder`` over HTTP on 127.0.0.1 until :meth:`close`; ``url`` is its base URL."""

    def __init__(self, folder: Path) -> None:
        self.requests: List[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                outer.requests.append(self.path)
                super().do_GET()

        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connections are refused at once): what a
    download sees on a machine without network, without waiting for DNS time-outs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
