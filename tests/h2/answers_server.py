"""An HTTP/1.1 server (Python's http.server, keep-alive and pipelining) whose answers are a pure
function of its --role and the request, for the tests that compare a shadow's answers with the
primary's (tests/tests/compare.rs, which restates these rules).

Paths (n is a number):
  GET /api/same/<n>      200 JSON {"id": n, "name": "item <n>"}                 (both roles alike)
  GET /api/fail/<n>      as /api/same/<n>; the shadow answers 500 when n % 4 == 0
  GET /api/price/<n>     200 JSON {"id": n, "price": P, "currency": "EUR"}; P = 100 + n, and
                         the shadow's is 1 more when n % 10 == 0
  GET /api/stamped/<n>   200 JSON {"id": n, "generated_at": <nanoseconds now>}  (always differs)
  GET /api/slow/<n>      as /api/same/<n>; the shadow answers after SLOW_SECONDS (0.2 s)
  GET /api/quote/<n>     200 JSON {"id": n, "price": P, "currency": "EUR", "generated_at": <ns>}:
                         /api/price/<n>'s price and /api/stamped/<n>'s stamp in one answer (the
                         demo's prices API)
  HEAD /api/head/<n>     200 with Content-Length 42, no body
  GET /api/empty/<n>     204
  GET /api/cached/<n>    304 with an ETag
  GET /api/chunked/<n>   200 JSON in two chunks (Transfer-Encoding: chunked)
  POST /api/echo/<n>     200 JSON {"id": n, "length": <body length>} (Expect: 100-continue is
                         answered with 100 Continue by http.server)
  GET /api/close/<n>     200 JSON, no length: the body runs until the server closes
  GET /api/broken/<n>    a head with both Content-Length and Transfer-Encoding (which a framer
                         cannot frame with certainty), a chunked body, then close
Every request is recorded as one JSON line {"role", "method", "path"} in --record.
"""

import argparse
import http.server
import json
import socketserver
import sys
import time

BROKEN = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", action="append", required=True, help="host:port, repeatable")
    parser.add_argument("--record", required=True, help="JSON-lines file of received requests")
    parser.add_argument("--role", choices=["primary", "shadow"], required=True)
    return parser.parse_args()


SLOW_SECONDS = 0.2

ARGS = parse_args()
RECORD = open(ARGS.record, "a", buffering=1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out as written, not 40 ms apart (Nagle's algorithm against delayed ACKs).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def record(self):
        RECORD.write(json.dumps({"role": ARGS.role, "method": self.command, "path": self.path}) + "\n")

    def number(self):
        try:
            return int(self.path.rstrip("/").rsplit("/", 1)[1])
        except (IndexError, ValueError):
            return 0

    def json(self, status, value, extra=()):
        body = json.dumps(value, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, header in extra:
            self.send_header(name, header)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.record()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "42")
        self.end_headers()

    def do_POST(self):
        self.record()
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.json(200, {"id": self.number(), "length": len(body)})

    def do_GET(self):
        self.record()
        n = self.number()
        shadow = ARGS.role == "shadow"
        kind = self.path.split("/")[2] if self.path.count("/") >= 3 else ""
        if kind == "same":
            self.json(200, {"id": n, "name": "item %d" % n})
        elif kind == "slow":
            if shadow:
                time.sleep(SLOW_SECONDS)
            self.json(200, {"id": n, "name": "item %d" % n})
        elif kind == "fail":
            if shadow and n % 4 == 0:
                self.json(500, {"error": "boom"})
            else:
                self.json(200, {"id": n, "name": "item %d" % n})
        elif kind == "price":
            price = 100 + n + (1 if shadow and n % 10 == 0 else 0)
            self.json(200, {"id": n, "price": price, "currency": "EUR"})
        elif kind == "stamped":
            self.json(200, {"id": n, "generated_at": time.time_ns()})
        elif kind == "quote":
            price = 100 + n + (1 if shadow and n % 10 == 0 else 0)
            self.json(200, {"id": n, "price": price, "currency": "EUR", "generated_at": time.time_ns()})
        elif kind == "empty":
            self.send_response(204)
            self.end_headers()
        elif kind == "cached":
            self.send_response(304)
            self.send_header("ETag", '"v%d"' % n)
            self.end_headers()
        elif kind == "chunked":
            body = json.dumps({"id": n, "name": "item %d" % n}, separators=(",", ":")).encode()
            half = len(body) // 2
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body[:half], body[half:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif kind == "close":
            body = json.dumps({"id": n, "until": "close"}, separators=(",", ":")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        elif kind == "broken":
            self.wfile.write(BROKEN)
            self.close_connection = True
        else:
            self.json(404, {"error": "no such path"})


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The daemon may dial several connections at once (a lane per worker): socketserver's
    # backlog of 5 would drop SYNs, and the copies would time out connecting.
    request_queue_size = 128


def serve(address):
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    server_class = Server
    if ":" in host:
        class Server6(Server):
            address_family = __import__("socket").AF_INET6
        server_class = Server6
    return server_class((host, int(port)), Handler)


def main():
    import threading

    servers = [serve(address) for address in ARGS.listen]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY " + " ".join(ARGS.listen), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
