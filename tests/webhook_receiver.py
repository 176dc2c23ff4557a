"""A platform's webhook endpoint, as a process of its own: HTTPS on 127.0.0.1, every POST verified with
``standardwebhooks.Webhook.verify`` and recorded, one JSON line per request, in ``--record``.

Run by tests/webhookkit.py (``python tests/webhook_receiver.py ...``); it imports nothing of rostersync, so
what it accepts is what any Standard Webhooks receiver would. Its answer is read, per request, from the
file ``--mode``: ``ok`` (verify, record, 204), ``fail`` (record the attempt, 500), ``fail-first:N`` (``fail`` while
the record holds fewer than N lines, then ``ok``) or ``ack-lost`` (verify,
record the batch as received, then answer 500, as if the 2xx never reached the sender).
``slow`` is ``ok`` after a 0.2 s pause. Requests are served in threads, so two senders can overlap; each
recorded line: ``{"mode", "verified", "id", "concurrent", "body"}`` (``concurrent``: requests in flight when
it arrived, itself included; body only when verified).
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

_write_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    """One POST: answer per the mode file, after verifying and recording."""

    server: Receiver

    def do_POST(self) -> None:
        with self.server.counting:
            self.server.in_flight += 1
            concurrent = self.server.in_flight
        try:
            self._answer(concurrent)
        finally:
            with self.server.counting:
                self.server.in_flight -= 1

    def _answer(self, concurrent: int) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        mode = self.server.mode_file.read_text().strip() if self.server.mode_file.exists() else "ok"
        if mode == "slow":  # ok, after a pause that leaves room for a second sender to overlap
            time.sleep(0.2)
            mode = "ok"
        if mode.startswith("fail-first:"):  # the first N requests of the record fail, then ok
            seen = len(self.server.record.read_text().splitlines()) if self.server.record.exists() else 0
            mode = "fail" if seen < int(mode.partition(":")[2]) else "ok"
        entry: dict[str, Any] = {"mode": mode, "verified": False, "id": self.headers.get("webhook-id")}
        entry["concurrent"] = concurrent
        if mode != "fail":
            try:
                entry["body"] = self.server.signer.verify(body, dict(self.headers.items()))
                entry["verified"] = True
            except WebhookVerificationError as error:
                entry["error"] = str(error)
        with _write_lock, self.server.record.open("a") as out:
            out.write(json.dumps(entry) + "\n")
        status = 204 if mode == "ok" and entry["verified"] else (401 if mode == "ok" else 500)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Receiver(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int, signer: Webhook, record: Path, mode_file: Path) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.signer, self.record, self.mode_file = signer, record, mode_file
        self.counting, self.in_flight = threading.Lock(), 0


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--secret", "--cert", "--key", "--record", "--mode", "--port-file"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Receiver(args.port, Webhook(args.secret), Path(args.record), Path(args.mode))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Path(args.port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
