"""Shared by the HTTP/2 test programs: the deterministic payloads, how messages and metadata are
described in JSON, the JSON-lines recording, and the "ready" line the Rust harness waits for.

Everything here has a twin in the Rust harness (`tests/src/grpc.rs`, `tests/src/h2c.rs`), which
recomputes the expected answers independently: keep the two in step.
"""

import json
import sys
import threading

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
# A text body or message shorter than this is also recorded as text, for readable failures.
TEXT_LIMIT = 200


def fnv1a64(data):
    """64-bit FNV-1a of `data` (bytes), as the Rust harness's `wire::fnv1a`."""
    value = FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


def pattern(seed, length):
    """`length` bytes, byte j being (seed * 131 + j) % 251: cheap to make on both sides, and not
    periodic at any power of two (frame and window sizes)."""
    start = (seed * 131) % 251
    period = bytes((start + j) % 251 for j in range(251))
    whole, rest = divmod(length, 251)
    return period * whole + period[:rest]


def describe(data):
    """A message or body as the recording and the client's output show it."""
    described = {"len": len(data), "fnv1a64": "%016x" % fnv1a64(data)}
    if len(data) <= TEXT_LIMIT:
        try:
            described["text"] = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return described


def is_binary_key(key):
    return key.endswith("-bin")


def metadata_to_json(metadata):
    """gRPC metadata (key, value) pairs as [key, value] lists; `-bin` values as lowercase hex."""
    pairs = []
    for key, value in metadata:
        if is_binary_key(key):
            value = value.hex() if isinstance(value, bytes) else str(value).encode().hex()
        elif isinstance(value, bytes):
            value = value.decode("latin-1")
        pairs.append([key, value])
    return pairs


def metadata_from_json(pairs):
    """The reverse of `metadata_to_json`: `-bin` values from hex to bytes."""
    return tuple(
        (key, bytes.fromhex(value) if is_binary_key(key) else value) for key, value in pairs
    )


class Recorder:
    """Appends one JSON object per line to a file, flushed at once (the test reads while the
    server runs), numbering the records in the order they are written."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = 0

    def write(self, record):
        with self._lock:
            record = dict(record, seq=self._seq)
            self._seq += 1
            self._file.write(json.dumps(record, sort_keys=True) + "\n")
            self._file.flush()


def announce_ready(**details):
    """The one line on stdout the Rust harness waits for before it lets a test use the server."""
    sys.stdout.write("READY " + json.dumps(details, sort_keys=True) + "\n")
    sys.stdout.flush()


def split_address(address):
    """`host:port` or `[v6]:port` into (host, port)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("not host:port: %r" % address)
    return host.strip("[]"), int(port)
