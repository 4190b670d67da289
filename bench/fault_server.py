"""A loopback ESP that misbehaves on demand, and counts what it really delivered.

Answers like Resend (``POST /emails``, with its ``Idempotency-Key`` header:
a repeat of a key gets the first answer and is not delivered again) and like
Postmark (``POST /email``, no idempotency). Faults are set by posting JSON to
``/_faults`` (all optional, all counted over send requests):

* ``fail_first``: answer the first N requests with ``fail_status`` (503)
* ``status_every`` / ``status``: every k-th request gets that status (429),
  with ``Retry-After: retry_after`` when given
* ``timeout_every`` / ``timeout_seconds``: every k-th request is delivered,
  then answered only after that many seconds (past the client's timeout, so
  the client can't know it was delivered)
* ``delay``: seconds every delivered request waits before its answer (so a
  killed client can die between the delivery and the answer)

``GET /_stats`` reports requests, deliveries per message (keyed by subject),
and idempotent replays; ``POST /_reset`` forgets everything.

    python bench/fault_server.py [PORT]
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.faults: dict = {}
        self.requests = 0
        self.deliveries: Counter[str] = Counter()  # subject -> times delivered
        self.replays = 0
        self.answers: dict[str, dict] = {}  # idempotency key -> first answer
        self.key_locks: dict[str, threading.Lock] = {}
        self.statuses: Counter[int] = Counter()

    def stats(self) -> dict:
        return {
            "requests": self.requests,
            "statuses": dict(self.statuses),
            "delivered": len(self.deliveries),
            "deliveries": sum(self.deliveries.values()),
            "delivered_twice": sum(1 for count in self.deliveries.values() if count > 1),
            "replays": self.replays,
            "subjects": dict(self.deliveries),
        }


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def answer(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a simulated timeout)

    def do_GET(self) -> None:
        if self.path == "/_stats":
            with STATE.lock:
                self.answer(200, STATE.stats())
        else:
            self.answer(404, {"message": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_faults":
            with STATE.lock:
                STATE.faults = json.loads(body or b"{}")
            return self.answer(200, {"ok": True})
        if self.path == "/_reset":
            with STATE.lock:
                STATE.reset()
            return self.answer(200, {"ok": True})
        resend = self.path.rstrip("/").endswith("/emails")
        if not resend and not self.path.rstrip("/").endswith("/email"):
            return self.answer(404, {"message": f"no endpoint {self.path}"})
        data = json.loads(body)
        subject = data.get("subject") or data.get("Subject") or ""
        key = self.headers.get("Idempotency-Key") if resend else None
        if key:
            # One request per key at a time: a repeat waits for the first to finish.
            with STATE.lock:
                key_lock = STATE.key_locks.setdefault(key, threading.Lock())
            with key_lock:
                return self.send_email(subject, key, resend)
        return self.send_email(subject, None, resend)

    def send_email(self, subject: str, key: str | None, resend: bool) -> None:
        with STATE.lock:
            STATE.requests += 1
            number = STATE.requests
            faults = STATE.faults
            if key and key in STATE.answers:
                STATE.replays += 1
                STATE.statuses[200] += 1
                return self.answer(200, STATE.answers[key])
            status = 200
            if number <= faults.get("fail_first", 0):
                status = faults.get("fail_status", 503)
            elif faults.get("status_every") and number % faults["status_every"] == 0:
                status = faults.get("status", 429)
            timeout = bool(faults.get("timeout_every")) and number % faults["timeout_every"] == 0
            STATE.statuses[status] += 1
            if status == 200:
                STATE.deliveries[subject] += 1
                message_id = str(uuid.uuid4())
                answer = (
                    {"id": message_id}
                    if resend
                    else {"To": "", "MessageID": message_id, "ErrorCode": 0, "Message": "OK"}
                )
                if key:
                    STATE.answers[key] = answer
        if status != 200:
            headers = {}
            if faults.get("retry_after") is not None and status in (429, 503):
                headers["Retry-After"] = faults["retry_after"]
            return self.answer(
                status, {"statusCode": status, "message": f"simulated {status}"}, headers
            )
        if timeout:
            time.sleep(faults.get("timeout_seconds", 2.0))
        elif faults.get("delay"):
            time.sleep(faults["delay"])
        self.answer(200, answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients killed mid-request are part of the test


def serve(port: int) -> None:
    server = Server(("127.0.0.1", port), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
