"""The chief worker's HTTP control endpoint (paths from `optimus_worker.contract`).

``POST /checkpoint`` finishes the current step, writes a checkpoint and answers
``{"step", "epoch", "path"}``; ``GET /status`` answers ``{"epoch", "step", "loss"}``. The
operator's resize protocol and the local runner use it; it listens on the pod's address.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from optimus_worker import contract

Answer = Callable[[], dict[str, Any]]


class ControlServer:
    """Serves `checkpoint` and `status` (callables returning JSON-able dicts) in a thread."""

    def __init__(self, host: str, port: int, checkpoint: Answer, status: Answer) -> None:
        routes = {("POST", contract.CONTROL_CHECKPOINT_PATH): checkpoint,
                  ("GET", contract.CONTROL_STATUS_PATH): status}

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                route = routes.get((method, self.path.split("?", 1)[0]))
                if route is None:
                    self._send(404, {"error": f"no {method} {self.path}"})
                    return
                try:
                    self._send(200, route())
                except Exception as exc:  # reported to the caller, the job goes on
                    self._send(503, {"error": str(exc)})

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self._answer("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per scrape-like call would drown the pod's log

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="control")

    def start(self) -> None:
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])
