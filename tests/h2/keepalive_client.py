"""Keep-alive load from real HTTP clients for the restart bench (tests/src/restart/).

Runs N `requests.Session`s, one thread each, every one sending GETs in a loop on its own
keep-alive connection (requests' defaults: no retries), until SIGTERM or SIGINT. Prints
`READY <sessions>` once every session has had an answer, then, when stopped, one line
`RESULT <json>`:

- `buckets`: `[ms, answered 200, answered otherwise, failed]` per millisecond of
  CLOCK_MONOTONIC (Python's `time.monotonic()` on Linux) in which requests began;
- `failures`: the first `MAX_FAILURES` exceptions, each with its time, session and type;
- `connections`: how many TCP connections each session opened.
"""

import argparse
import json
import signal
import sys
import threading
import time

import requests
import urllib3.connection

MAX_FAILURES = 1000
OK, OTHER_STATUS, FAILED = 1, 2, 3

# TCP connections opened, per thread (each session has its own). urllib3 keeps a pooled
# connection object across reconnects, so its pool's own count says nothing about them.
opened = threading.local()
_connect = urllib3.connection.HTTPConnection.connect


def counting_connect(connection):
    opened.count = getattr(opened, "count", 0) + 1
    return _connect(connection)


urllib3.connection.HTTPConnection.connect = counting_connect


class Session(threading.Thread):
    """One `requests.Session` in a loop; keeps its own counts (no lock on the hot path)."""

    def __init__(self, number, args, stop, answered):
        super().__init__(daemon=True)
        self.number = number
        self.args = args
        self.stop = stop
        self.answered = answered
        self.buckets = {}
        self.failures = []
        self.connections = 0

    def run(self):
        session = requests.Session()
        headers = {"Host": self.args.host} if self.args.host else {}
        pause = self.args.pause_ms / 1000.0
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                response = session.get(self.args.url, headers=headers, timeout=self.args.timeout)
                outcome = OK if response.status_code == 200 else OTHER_STATUS
                self.answered.set()
            except requests.RequestException as error:
                outcome = FAILED
                if len(self.failures) < MAX_FAILURES:
                    self.failures.append(
                        {
                            "ms": int(began * 1000),
                            "session": self.number,
                            "exception": type(error).__name__,
                            "detail": str(error)[:300],
                        }
                    )
            counts = self.buckets.setdefault(int(began * 1000), [0, 0, 0, 0])
            counts[outcome] += 1
            if pause:
                time.sleep(pause)
        self.connections = getattr(opened, "count", 0)
        session.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--host", help="the Host header (default: from the URL)")
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--pause-ms", type=float, default=0.0, help="between requests")
    parser.add_argument("--ready-timeout", type=float, default=10.0)
    args = parser.parse_args()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    answered = [threading.Event() for _ in range(args.sessions)]
    sessions = [Session(n, args, stop, answered[n]) for n in range(args.sessions)]
    for session in sessions:
        session.start()
    deadline = time.monotonic() + args.ready_timeout
    for event in answered:
        if not event.wait(max(0.0, deadline - time.monotonic())):
            stop.set()
            print(f"FAILED not every session had an answer within {args.ready_timeout} s", flush=True)
            return 1
    print(f"READY {args.sessions}", flush=True)

    # Signals reach the main thread only: it waits for them here.
    while not stop.wait(0.5):
        pass
    for session in sessions:
        session.join()

    merged = {}
    for session in sessions:
        for ms, counts in session.buckets.items():
            total = merged.setdefault(ms, [ms, 0, 0, 0])
            for index in (OK, OTHER_STATUS, FAILED):
                total[index] += counts[index]
    failures = sorted((f for s in sessions for f in s.failures), key=lambda f: f["ms"])
    result = {
        "buckets": [merged[ms] for ms in sorted(merged)],
        "failures": failures,
        "connections": [session.connections for session in sessions],
    }
    print("RESULT " + json.dumps(result, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
