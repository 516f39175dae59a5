"""A real HTTP server on 127.0.0.1 that stands between rbft and `rbft serve` and misbehaves on purpose."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FaultProxy:
    """Forwards chat completions to `upstream`; `plan(n, body)` may return a fault for the n-th request:
    "500", "malformed" (a 200 whose body is not JSON), "truncated" (JSON without choices), or
    "timeout" (answers only after `slow_s`). `calls` counts requests."""

    def __init__(self, upstream: str, plan, slow_s: float = 3.0):
        self.upstream, self.plan, self.slow_s = upstream.rstrip("/"), plan, slow_s
        self.calls = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    n = proxy.calls
                    proxy.calls += 1
                fault = proxy.plan(n, json.loads(raw))
                if fault == "500":
                    return self._reply(500, b'{"error": {"message": "injected"}}')
                if fault == "malformed":
                    return self._reply(200, b'{"choices": [{"message": {"content": "Subj')
                if fault == "truncated":
                    return self._reply(200, b'{"id": "x", "object": "chat.completion"}')
                if fault == "timeout":
                    time.sleep(proxy.slow_s)
                answer = httpx.post(proxy.upstream + "/chat/completions", content=raw,
                                    headers={"Content-Type": "application/json"}, timeout=120)
                try:
                    self._reply(answer.status_code, answer.content)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

            def _reply(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
