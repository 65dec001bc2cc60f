"""A recording plain HTTP/2 server (h2c with prior knowledge; the `h2` package from PyPI on
asyncio) for curl, nghttp and h2load in the HTTP/2 tests.

Every request becomes one JSON line in the --record file when its stream ends or is reset:
connection number and peer, stream id, every header field in order (pseudo-headers included,
as the server decoded them), the body (length, FNV-1a 64, text when short), the trailers, and
whether it completed (END_STREAM) or was reset.

Its answers are a pure function of the request (the Rust harness recomputes them): status 200
(or --status), `content-type: text/plain`, `x-request-body-bytes: <n>`, and the body
  GET /bytes/<n>   pattern(0, <n>)
  anything else    "<method> <path> <body length> <fnv1a64 of the body, 16 hex>\n"
followed by the trailer `x-body-fnv1a64: <16 hex>` when the request carried `te: trailers`.

--delay S holds every answer S seconds. --settings K=V,... are the server's SETTINGS (h2 names:
header_table_size, initial_window_size, max_frame_size, max_concurrent_streams, ...);
--update-settings K=V,... are sent again, changed, after the first request of each connection
has been answered (SETTINGS that change mid-connection).
"""

import argparse
import asyncio
import signal
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

import harness

READ_BYTES = 65536


def settings(text):
    """`k=v,k=v` into {h2.settings.SettingCodes: int}."""
    parsed = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            parsed[h2.settings.SettingCodes[key.strip().upper()]] = int(value)
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError("bad setting %r" % item)
    return parsed


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", action="append", required=True, help="host:port, repeatable")
    parser.add_argument("--record", required=True, help="JSON-lines file of received requests")
    parser.add_argument("--name", default="h2", help="recorded as `server`")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--settings", type=settings, default={})
    parser.add_argument("--update-settings", type=settings, default={})
    return parser.parse_args()


def text_pairs(headers):
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers]


def answer(headers, body, status):
    """(response headers, body, trailers) for a request: the documented pure function."""
    fields = dict(headers)
    method, path = fields.get(b":method", b""), fields.get(b":path", b"")
    digest = "%016x" % harness.fnv1a64(body)
    if method == b"GET" and path.startswith(b"/bytes/") and path[7:].isdigit():
        content = harness.pattern(0, int(path[7:]))
    else:
        content = b"%s %s %d %s\n" % (method, path, len(body), digest.encode())
    response = [
        (b":status", str(status).encode()),
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(content)).encode()),
        (b"x-request-body-bytes", str(len(body)).encode()),
    ]
    trailers = [(b"x-body-fnv1a64", digest.encode())] if fields.get(b"te") == b"trailers" else None
    return response, content, trailers


class Stream:
    def __init__(self, headers):
        self.headers = headers
        self.body = bytearray()
        self.trailers = None


class Connection:
    def __init__(self, server, number, reader, writer):
        self.server = server
        self.number = number
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = "%s:%d" % (peer[0], peer[1]) if peer else "?"
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.streams = {}
        self.window_open = asyncio.Event()
        self.answered = 0
        self.tasks = set()

    async def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def run(self):
        if self.server.args.settings:
            self.h2.local_settings = h2.settings.Settings(
                client=False, initial_values=self.server.args.settings
            )
        self.h2.initiate_connection()
        await self.flush()
        try:
            while True:
                data = await self.reader.read(READ_BYTES)
                if not data:
                    break
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    await self.flush()
                    break
                for event in events:
                    self.handle(event)
                await self.flush()
        except ConnectionError:
            pass
        finally:
            for stream_id in list(self.streams):
                self.record(stream_id, complete=False)
            self.window_open.set()
            self.writer.close()

    def handle(self, event):
        if isinstance(event, h2.events.RequestReceived):
            self.streams[event.stream_id] = Stream(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.trailers = event.headers
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.record(event.stream_id, complete=True)
            if stream is not None:
                task = asyncio.ensure_future(self.respond(event.stream_id, stream))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        elif isinstance(event, h2.events.StreamReset):
            self.record(event.stream_id, complete=False)
        elif isinstance(event, h2.events.WindowUpdated):
            self.window_open.set()

    def record(self, stream_id, complete):
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return None
        self.server.recorder.write(
            {
                "server": self.server.args.name,
                "connection": self.number,
                "peer": self.peer,
                "stream": stream_id,
                "headers": text_pairs(stream.headers),
                "body": harness.describe(bytes(stream.body)),
                "trailers": text_pairs(stream.trailers) if stream.trailers is not None else None,
                "complete": complete,
            }
        )
        return stream

    async def respond(self, stream_id, stream):
        if self.server.args.delay > 0:
            await asyncio.sleep(self.server.args.delay)
        headers, content, trailers = answer(stream.headers, bytes(stream.body), self.server.args.status)
        try:
            self.h2.send_headers(stream_id, headers, end_stream=not content and not trailers)
            await self.flush()
            sent = 0
            while sent < len(content):
                window = min(
                    self.h2.local_flow_control_window(stream_id),
                    self.h2.max_outbound_frame_size,
                    len(content) - sent,
                )
                if window <= 0:
                    self.window_open.clear()
                    await self.window_open.wait()
                    continue
                last = sent + window == len(content) and not trailers
                self.h2.send_data(stream_id, content[sent : sent + window], end_stream=last)
                sent += window
                await self.flush()
            if trailers:
                self.h2.send_headers(stream_id, trailers, end_stream=True)
                await self.flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            return
        self.answered += 1
        if self.answered == 1 and self.server.args.update_settings:
            self.h2.update_settings(self.server.args.update_settings)
            await self.flush()


class Server:
    def __init__(self, args):
        self.args = args
        self.recorder = harness.Recorder(args.record)
        self.connections = 0

    async def accept(self, reader, writer):
        number = self.connections
        self.connections += 1
        await Connection(self, number, reader, writer).run()


async def serve(args):
    server = Server(args)
    listeners = []
    for address in args.listen:
        host, port = harness.split_address(address)
        try:
            listeners.append(await asyncio.start_server(server.accept, host, port, reuse_address=True))
        except OSError as error:
            print("h2_server: cannot listen on %s: %s" % (address, error), file=sys.stderr)
            return 2
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    harness.announce_ready(server=args.name, listen=args.listen, h2=h2.__version__)
    await stop.wait()
    for listener in listeners:
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(parse_args())))
