"""The chief worker's HTTP control endpoint (paths from `optimus_worker.contract`).

``POST /checkpoint`` finishes the current step, writes a checkpoint and answers
``{"step", "epoch", "path"}``; ``GET /status`` answers ``{"epoch", "step", "loss"}``;
``POST /membership`` with ``{"workers", "generation"}`` (optionally ``"ps"``, a new PS
count, and ``"timeout_s"``, the wait for the added tasks) switches the running job to a
new worker or PS count in place and answers once it trains at that size
(`optimus_worker.membership`; 400 for a request the job cannot follow, 503 when the switch
failed: restart instead). The operator's resize protocol and the local runner use it; it
listens on the pod's address.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from optimus_worker import contract
from optimus_worker.membership import MembershipError

Answer = Callable[[], dict[str, Any]]
BodyAnswer = Callable[[Any], dict[str, Any]]  # called with the request's JSON body


class ControlServer:
    """Serves `checkpoint`, `status` and `membership` (callables returning JSON-able
    dicts) in a thread."""

    def __init__(self, host: str, port: int, checkpoint: Answer, status: Answer,
                 membership: BodyAnswer) -> None:
        routes: dict[tuple[str, str], BodyAnswer] = {
            ("POST", contract.CONTROL_CHECKPOINT_PATH): lambda _: checkpoint(),
            ("GET", contract.CONTROL_STATUS_PATH): lambda _: status(),
            ("POST", contract.CONTROL_MEMBERSHIP_PATH): membership}

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str, body: Any = None) -> None:
                route = routes.get((method, self.path.split("?", 1)[0]))
                if route is None:
                    self._send(404, {"error": f"no {method} {self.path}"})
                    return
                try:
                    self._send(200, route(body))
                except MembershipError as exc:  # a request the job cannot follow: the caller's fix
                    self._send(400, {"error": str(exc)})
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
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw.strip() else None
                except ValueError:
                    self._send(400, {"error": "the request body is not JSON"})
                    return
                self._answer("POST", body)

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
