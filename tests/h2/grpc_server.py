"""A recording gRPC server (Python `grpcio`, no generated code: raw-bytes messages through a
generic handler) for the primary and the shadow of the HTTP/2 tests.

Every call it receives becomes one JSON line in the --record file when the call ends: method
path, `:authority`, peer, all metadata in order (`-bin` values as hex), the deadline left at
arrival (from `grpc-timeout`), each request message (length, FNV-1a 64, text when short), the
status it ended with, and whether the client cancelled it.

Its answers are a pure function of the call (the Rust harness recomputes them):
  /mirror.test.Echo/Unary    one message: b"unary:" + request
  /mirror.test.Echo/Collect  (client streaming) one message:
                             b"collect:<count>:<total bytes>:<fnv1a64 of all, 16 hex>"
  /mirror.test.Echo/Expand   (server streaming) the request is the text "<count> <bytes>"; answers
                             <count> messages, message i being pattern(i, <bytes>)
  /mirror.test.Echo/Chat     (bidirectional) each message answered at once: b"chat:" + message
  any other method           UNIMPLEMENTED (recorded all the same)
Initial metadata: every request entry whose key starts with `x-echo-`, in order; trailing
metadata: `x-messages-received: <n>`.

Behaviours (for a shadow): --delay S holds every answer S seconds (cut short when the client
cancels); --status CODE ends the calls to --status-methods (default: all) with that status,
either at once without a message (--status-when first: a Trailers-Only response) or after the
normal answer (--status-when last); with --status-every N only every Nth of those calls, in
order of arrival (the Nth, 2Nth, ...), the others answering normally. A refusing shadow is one
that is not started.
"""

import argparse
import concurrent.futures
import signal
import sys
import threading
import time

import grpc

import harness

SERVICE = "/mirror.test.Echo/"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Streams held open at once (each streaming call holds a worker thread).
MAX_WORKERS = 256


def status_code(name):
    try:
        return grpc.StatusCode[name.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError("unknown gRPC status %r" % name)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", action="append", required=True, help="host:port, repeatable")
    parser.add_argument("--record", required=True, help="JSON-lines file of received calls")
    parser.add_argument("--name", default="grpc", help="recorded as `server`")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--status", type=status_code, help="end calls with this status")
    parser.add_argument("--status-methods", default="", help="comma-separated paths (default all)")
    parser.add_argument("--status-when", choices=["first", "last"], default="first")
    parser.add_argument("--status-every", type=int, default=1, help="fail every Nth such call")
    return parser.parse_args()


class Call:
    """One call's record, written when the call ends whichever way it ends."""

    _arrivals = 0
    _arrivals_lock = threading.Lock()

    def __init__(self, server, method, context):
        self.server = server
        self.context = context
        with Call._arrivals_lock:
            self.arrival = Call._arrivals
            Call._arrivals += 1
        self.ended = threading.Event()
        self.fails = server.decide_failure(method)
        context.add_callback(self.ended.set)
        remaining = context.time_remaining()
        self.record = {
            "server": server.name,
            "call": self.arrival,
            "method": method,
            "authority": authority(context),
            "peer": context.peer(),
            "metadata": harness.metadata_to_json(context.invocation_metadata()),
            # grpcio gives no deadline as a huge number of seconds.
            "deadline_s": remaining if remaining is not None and remaining < 1e8 else None,
            "requests": [],
            "status": "OK",
            "cancelled": False,
            "started": time.time(),
        }

    def received(self, message):
        self.record["requests"].append(harness.describe(message))

    def messages(self, request_iterator):
        for message in request_iterator:
            self.received(message)
            yield message

    def begin_answer(self):
        """Sends the initial metadata after the configured delay; False when the call ended (the
        client cancelled) meanwhile."""
        if self.server.delay > 0 and self.ended.wait(self.server.delay):
            return False
        echoed = tuple(
            (key, value)
            for key, value in self.context.invocation_metadata()
            if key.startswith("x-echo-")
        )
        self.context.send_initial_metadata(echoed)
        return True

    def finish(self):
        self.context.set_trailing_metadata(
            (("x-messages-received", str(len(self.record["requests"]))),)
        )

    def close(self, error=None):
        """Writes the record. `error`: what ended the handler early (an abort this server chose
        has set the status already; anything else is the client going away, or a bug)."""
        self.record["cancelled"] = not self.context.is_active()
        if self.record["cancelled"] and self.record["status"] == "OK":
            self.record["status"] = "CANCELLED"
        if error is not None and not self.record["cancelled"] and self.record["status"] == "OK":
            self.record["status"] = "UNKNOWN"
            self.record["error"] = repr(error)
        self.record["ended"] = time.time()
        self.server.recorder.write(self.record)


def authority(context):
    # grpcio's public API does not expose `:authority`; the server call's details hold it as
    # `host`. The version is pinned (tests/h2/requirements.txt) and checked at start-up.
    host = context._rpc_event.call_details.host
    return host.decode("latin-1") if isinstance(host, bytes) else host


class EchoService(grpc.GenericRpcHandler):
    def __init__(self, args):
        self.name = args.name
        self.delay = args.delay
        self.status = args.status
        self.status_methods = {m for m in args.status_methods.split(",") if m}
        self.status_when = args.status_when
        self.status_every = max(1, args.status_every)
        self.failing_calls = 0
        self.failing_lock = threading.Lock()
        self.recorder = harness.Recorder(args.record)

    def decide_failure(self, method):
        """Whether the call to `method` arriving now ends with --status."""
        if self.status is None or (self.status_methods and method not in self.status_methods):
            return False
        with self.failing_lock:
            self.failing_calls += 1
            return self.failing_calls % self.status_every == 0

    def service(self, details):
        method = details.method
        kind = {
            SERVICE + "Unary": ("unary", self.unary),
            SERVICE + "Collect": ("client_streaming", self.collect),
            SERVICE + "Expand": ("server_streaming", self.expand),
            SERVICE + "Chat": ("bidi", self.chat),
        }.get(method, ("bidi", self.unimplemented))
        name, body = kind

        def run(request, context):
            call = Call(self, method, context)
            try:
                result = body(call, request)
            except BaseException as error:
                call.close(error)
                raise
            if name in ("server_streaming", "bidi"):
                return self.stream(call, result)
            call.close()
            return result

        factories = {
            "unary": grpc.unary_unary_rpc_method_handler,
            "client_streaming": grpc.stream_unary_rpc_method_handler,
            "server_streaming": grpc.unary_stream_rpc_method_handler,
            "bidi": grpc.stream_stream_rpc_method_handler,
        }
        return factories[name](run)

    def stream(self, call, responses):
        """Wraps a streaming answer so the call is recorded when the stream ends."""
        try:
            yield from responses
        except BaseException as error:
            call.close(error)
            raise
        call.close()

    def fail_first(self, call):
        """--status-when first: ends the call at once, a Trailers-Only response."""
        if call.fails and self.status_when == "first":
            call.record["status"] = self.status.name
            call.finish()
            call.context.abort(self.status, "configured to fail with " + self.status.name)

    def fail_last(self, call):
        """--status-when last: the normal answer goes out, then the status in the trailers."""
        if call.fails and self.status_when == "last":
            call.record["status"] = self.status.name
            call.context.set_code(self.status)
            call.context.set_details("configured to fail with " + self.status.name)

    def unary(self, call, request):
        call.received(request)
        self.fail_first(call)
        if not call.begin_answer():
            return None
        call.finish()
        self.fail_last(call)
        return b"unary:" + request

    def collect(self, call, requests):
        self.fail_first(call)
        messages = list(call.messages(requests))
        if not call.begin_answer():
            return None
        joined = b"".join(messages)
        call.finish()
        self.fail_last(call)
        return b"collect:%d:%d:%016x" % (len(messages), len(joined), harness.fnv1a64(joined))

    def expand(self, call, request):
        call.received(request)
        self.fail_first(call)
        try:
            count, size = (int(field) for field in request.decode("ascii").split())
            if count < 0 or size < 0 or count * size > MAX_MESSAGE_BYTES:
                raise ValueError("too much")
        except ValueError:
            call.record["status"] = "INVALID_ARGUMENT"
            call.context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected '<count> <bytes>'")
        if not call.begin_answer():
            return iter(())

        def answers():
            for index in range(count):
                yield harness.pattern(index, size)
            call.finish()
            self.fail_last(call)

        return answers()

    def chat(self, call, requests):
        self.fail_first(call)

        def answers():
            started = False
            for message in call.messages(requests):
                if not started:
                    if not call.begin_answer():
                        return
                    started = True
                yield b"chat:" + message
            if not started and not call.begin_answer():
                return
            call.finish()
            self.fail_last(call)

        return answers()

    def unimplemented(self, call, requests):
        call.record["status"] = "UNIMPLEMENTED"
        call.context.abort(grpc.StatusCode.UNIMPLEMENTED, "no such method: " + call.record["method"])


def main():
    args = parse_args()
    service = EchoService(args)
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=MAX_WORKERS),
        handlers=[service],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Two servers must never share a port silently.
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=None,
    )
    for address in args.listen:
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as error:
            port = 0
            print("grpc_server: cannot listen on %s: %s" % (address, error), file=sys.stderr)
        if port == 0:
            print("grpc_server: cannot listen on %s" % address, file=sys.stderr)
            return 2
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    harness.announce_ready(server=args.name, listen=args.listen, grpcio=grpc.__version__)
    stop.wait()
    server.stop(grace=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
