"""A loopback HTTP server that answers send calls the way real ESPs do.

Used by the benchmarks: it reads each request fully and answers with the
ESP's real success shape, fast enough that the client side dominates.
Run it as a separate process so it doesn't share the client's GIL:

    python bench/esp_server.py PORT
"""

from __future__ import annotations

import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _response_for(path: str) -> tuple[int, dict]:
    message_id = uuid.uuid4().hex
    if "/messages" in path:  # Mailgun: /v3/<domain>/messages
        return 200, {"id": f"<{message_id}@example.com>", "message": "Queued. Thank you."}
    if path.endswith("/email"):  # Postmark single send
        return 200, {
            "To": "x@example.com",
            "SubmittedAt": "2026-11-23T00:00:00Z",
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        }
    if path.endswith("/mail/send"):  # SendGrid v3: 202, empty body
        return 202, {}
    if "/outbound-emails" in path:  # Amazon SES v2 SendEmail
        return 200, {"MessageId": f"0100{message_id}-000000"}
    return 200, {"id": message_id}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the ESPs' servers do
    # Buffer the response so headers and body leave in one write: two small
    # writes on a keep-alive connection stall ~40 ms on Nagle + delayed ACK.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, body = _response_for(self.path)
        data = b"" if status == 202 else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 202:
            self.send_header("X-Message-Id", uuid.uuid4().hex)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


def serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
