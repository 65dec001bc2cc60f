"""A scripted gRPC client (Python `grpcio`, raw-bytes messages): runs the calls of a JSON script
on ONE channel, hence one HTTP/2 connection, all at once or one after another, and prints what
each call got as one JSON object on stdout, so a test can compare answers through the daemon
with answers direct.

Script (a file, or `-` for stdin):
  {"authority": null | "host:port",    the channel's :authority (default: the target)
   "parallel": true,                   start every call at once (threads on the one channel)
   "connect_timeout": 10,              seconds to wait for the channel to connect
   "calls": [{"name": "u1",
              "kind": "unary" | "client_streaming" | "server_streaming" | "bidi",
              "method": "/mirror.test.Echo/Unary",
              "metadata": [["x-key", "value"], ["x-trace-bin", "00ff"]],   -bin values in hex
              "timeout": null | seconds,      sent as grpc-timeout
              "pause_before": null | seconds, waited before the call starts
              "messages": [{"text": "hello"} | {"seed": 1, "len": 70000}]}]}
A bidirectional call is a ping-pong: each message is sent once the answer to the one before has
arrived, so answers flow while the client is still sending.

Output: {"calls": [{"name", "kind", "method", "code": "OK" | status name, "details",
  "initial_metadata", "trailing_metadata", "responses": [{"len", "fnv1a64", "text"?}],
  "elapsed_ms"}], "elapsed_ms"}. A failed call is data, not an error: the exit code is 0 unless
the script is wrong (2) or the channel never connected (3).
"""

import argparse
import concurrent.futures
import json
import queue
import sys
import time

import grpc

import harness

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def message_bytes(spec):
    if "text" in spec:
        return spec["text"].encode("utf-8")
    return harness.pattern(spec["seed"], spec["len"])


def call_result(spec, call, responses, started):
    """What a finished call (a grpc.Call, or the RpcError that is one) shows."""
    return {
        "name": spec["name"],
        "kind": spec["kind"],
        "method": spec["method"],
        "code": call.code().name,
        "details": call.details() or "",
        "initial_metadata": harness.metadata_to_json(call.initial_metadata() or ()),
        "trailing_metadata": harness.metadata_to_json(call.trailing_metadata() or ()),
        "responses": [harness.describe(r) for r in responses],
        "elapsed_ms": (time.monotonic() - started) * 1000.0,
    }


def run_call(channel, spec):
    time.sleep(spec.get("pause_before") or 0)
    kind = spec["kind"]
    messages = [message_bytes(m) for m in spec.get("messages", [])]
    options = {
        "metadata": harness.metadata_from_json(spec.get("metadata", [])),
        "timeout": spec.get("timeout"),
    }
    started = time.monotonic()
    responses = []
    if kind in ("unary", "client_streaming"):
        if kind == "unary":
            if len(messages) != 1:
                raise ValueError("%s: a unary call sends exactly one message" % spec["name"])
            stub, request = channel.unary_unary(spec["method"]), messages[0]
        else:
            stub, request = channel.stream_unary(spec["method"]), iter(messages)
        try:
            response, call = stub.with_call(request, **options)
            responses.append(response)
        except grpc.RpcError as error:
            call = error
        return call_result(spec, call, responses, started)

    if kind == "server_streaming":
        if len(messages) != 1:
            raise ValueError("%s: a server-streaming call sends exactly one message" % spec["name"])
        call = channel.unary_stream(spec["method"])(messages[0], **options)
    elif kind == "bidi":
        answered = queue.Queue()

        def ping_pong():
            for index, message in enumerate(messages):
                if index > 0 and answered.get() is None:
                    return
                yield message

        call = channel.stream_stream(spec["method"])(ping_pong(), **options)
    else:
        raise ValueError("%s: unknown kind %r" % (spec["name"], kind))
    try:
        for response in call:
            responses.append(response)
            if kind == "bidi":
                answered.put(True)
    except grpc.RpcError:
        pass
    finally:
        if kind == "bidi":
            answered.put(None)
    return call_result(spec, call, responses, started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="host:port or [v6]:port")
    parser.add_argument("--script", required=True, help="the JSON script, or - for stdin")
    args = parser.parse_args()
    try:
        text = sys.stdin.read() if args.script == "-" else open(args.script).read()
        script = json.loads(text)
        calls = script["calls"]
    except (OSError, ValueError, KeyError) as error:
        print("grpc_client: bad script: %s" % error, file=sys.stderr)
        return 2

    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # A retried call would reach the server twice: the tests count arrivals.
        ("grpc.enable_retries", 0),
        # Never through a proxy named in the environment; never a connection shared with
        # another channel.
        ("grpc.enable_http_proxy", 0),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    if script.get("authority"):
        options.append(("grpc.default_authority", script["authority"]))
    started = time.monotonic()
    with grpc.insecure_channel(args.target, options=options) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=script.get("connect_timeout", 10))
        except grpc.FutureTimeoutError:
            print("grpc_client: could not connect to %s" % args.target, file=sys.stderr)
            return 3
        try:
            if script.get("parallel", True) and len(calls) > 1:
                with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
                    results = list(pool.map(lambda spec: run_call(channel, spec), calls))
            else:
                results = [run_call(channel, spec) for spec in calls]
        except (ValueError, KeyError) as error:
            print("grpc_client: bad call in script: %s" % error, file=sys.stderr)
            return 2
    json.dump(
        {"calls": results, "elapsed_ms": (time.monotonic() - started) * 1000.0},
        sys.stdout,
        sort_keys=True,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
