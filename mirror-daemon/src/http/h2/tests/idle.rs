//! When the decoder calls a connection idle: every stream the client opened ended both ways
//! (END_STREAM each way, or RST_STREAM either way, or not processed after the primary's GOAWAY),
//! nothing half-read, still followed; with and without the primary's responses decoded.

use super::cases::{
    block, client_preface, frame, request_block, settings, settings_ack, CONTINUATION, DATA,
    END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, PUSH_PROMISE, RST_STREAM, WINDOW_UPDATE,
};
use super::responses::get;
use crate::http::h2::{H2Decoder, H2Limits, Peer};

/// A decoder past both prefaces and SETTINGS, fed one frame at a time.
struct Connection {
    decoder: H2Decoder,
}

impl Connection {
    fn new(decode_responses: bool) -> Self {
        let mut connection = Self {
            decoder: H2Decoder::new(H2Limits {
                decode_responses,
                ..H2Limits::default()
            }),
        };
        connection.feed(Peer::Client, &client_preface());
        connection.feed(Peer::Server, &[settings(&[]), settings_ack()].concat());
        connection.feed(Peer::Client, &settings_ack());
        connection
    }

    fn feed(&mut self, peer: Peer, bytes: &[u8]) {
        let mut events = Vec::new();
        match peer {
            Peer::Client => self.decoder.feed_client(bytes, &mut events),
            Peer::Server => self.decoder.feed_server(bytes, &mut events),
        }
    }

    fn idle(&self) -> bool {
        self.decoder.is_idle()
    }
}

fn post(stream: u32) -> Vec<u8> {
    frame(
        HEADERS,
        END_HEADERS,
        stream,
        &request_block("POST", "/", &[]),
    )
}

fn status(stream: u32, flags: u8) -> Vec<u8> {
    frame(HEADERS, flags, stream, &block(&[(":status", "200")]))
}

fn rst(stream: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())
}

fn both_ways(check: impl Fn(&mut Connection)) {
    for decode_responses in [false, true] {
        check(&mut Connection::new(decode_responses));
    }
}

#[test]
fn a_connection_is_idle_between_exchanges_not_during_one() {
    both_ways(|c| {
        assert!(c.idle(), "no stream opened yet");
        c.feed(Peer::Client, &get(1));
        assert!(!c.idle(), "a request waits for its response");
        c.feed(Peer::Server, &status(1, END_HEADERS));
        assert!(!c.idle(), "the response's body is to come");
        c.feed(Peer::Server, &frame(DATA, 0, 1, b"partial"));
        assert!(!c.idle());
        c.feed(Peer::Server, &frame(DATA, END_STREAM, 1, b"end"));
        assert!(c.idle(), "ended both ways");
        // Control frames between exchanges change nothing.
        c.feed(Peer::Client, &frame(PING, 0, 0, &[0; 8]));
        c.feed(
            Peer::Server,
            &frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()),
        );
        assert!(c.idle());

        // A streaming request: the response ends first (with trailers), then the request.
        c.feed(Peer::Client, &post(3));
        c.feed(Peer::Server, &status(3, END_HEADERS));
        c.feed(
            Peer::Server,
            &frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                3,
                &block(&[("grpc-status", "0")]),
            ),
        );
        assert!(!c.idle(), "the client's side is still open");
        c.feed(Peer::Client, &frame(DATA, 0, 3, b"more"));
        assert!(!c.idle());
        c.feed(Peer::Client, &frame(DATA, END_STREAM, 3, b""));
        assert!(c.idle());
    });
}

#[test]
fn resets_from_either_side_end_a_stream_both_ways() {
    both_ways(|c| {
        c.feed(Peer::Client, &post(1));
        c.feed(Peer::Client, &rst(1));
        assert!(c.idle(), "reset by the client");
        c.feed(Peer::Client, &get(3));
        c.feed(Peer::Server, &rst(3));
        assert!(c.idle(), "refused by the primary");
        // A skipped request (malformed: no :path) is still answered by the primary.
        let malformed = block(&[(":method", "GET"), (":scheme", "http")]);
        c.feed(
            Peer::Client,
            &frame(HEADERS, END_HEADERS | END_STREAM, 5, &malformed),
        );
        assert!(
            !c.idle(),
            "a stream lives whatever the decoder reports of it"
        );
        c.feed(Peer::Server, &rst(5));
        assert!(c.idle());
    });
}

#[test]
fn half_read_frames_and_field_blocks_are_not_idle() {
    both_ways(|c| {
        let request = get(1);
        c.feed(Peer::Client, &request[..request.len() - 2]);
        c.feed(Peer::Server, &status(1, END_HEADERS | END_STREAM));
        assert!(!c.idle(), "the request's frame is half-read");
        c.feed(Peer::Client, &request[request.len() - 2..]);
        assert!(c.idle());

        // The response's head ends the stream, but its CONTINUATION is still to come.
        c.feed(Peer::Client, &get(3));
        let fields = block(&[(":status", "200"), ("x-long", "value")]);
        let (first, rest) = fields.split_at(5);
        c.feed(Peer::Server, &frame(HEADERS, END_STREAM, 3, first));
        assert!(!c.idle(), "the primary's field block is in progress");
        c.feed(Peer::Server, &frame(CONTINUATION, END_HEADERS, 3, rest));
        assert!(c.idle());

        let ping = frame(PING, 0, 0, &[0; 8]);
        c.feed(Peer::Server, &ping[..4]);
        assert!(!c.idle(), "a frame header of the primary is half-read");
        c.feed(Peer::Server, &ping[4..]);
        assert!(c.idle());
    });
}

#[test]
fn streams_the_primary_will_not_process_do_not_keep_it_busy() {
    both_ways(|c| {
        c.feed(Peer::Client, &get(1));
        c.feed(Peer::Client, &get(3));
        let goaway = [1u32.to_be_bytes(), 0u32.to_be_bytes()].concat();
        c.feed(Peer::Server, &frame(GOAWAY, 0, 0, &goaway));
        assert!(!c.idle(), "stream 1 is still processed");
        c.feed(Peer::Client, &get(5));
        assert!(!c.idle());
        c.feed(Peer::Server, &status(1, END_HEADERS | END_STREAM));
        assert!(c.idle(), "streams 3 and 5 get nothing more");
    });
}

#[test]
fn pushes_and_tunnels_are_never_idle() {
    both_ways(|c| {
        c.feed(Peer::Client, &get(1));
        let promise = [
            2u32.to_be_bytes().to_vec(),
            request_block("GET", "/style.css", &[]),
        ];
        c.feed(
            Peer::Server,
            &frame(PUSH_PROMISE, END_HEADERS, 1, &promise.concat()),
        );
        c.feed(Peer::Server, &status(1, END_HEADERS | END_STREAM));
        c.feed(Peer::Server, &status(2, END_HEADERS | END_STREAM));
        assert!(!c.idle(), "a pushed stream is not followed");
    });
    both_ways(|c| {
        c.feed(Peer::Client, &frame(DATA, 0, 0, b"on stream 0"));
        assert!(c.decoder.is_tunnel());
        assert!(!c.idle());
    });
}

#[test]
fn too_many_live_streams_are_never_idle() {
    let mut c = Connection {
        decoder: H2Decoder::new(H2Limits {
            max_streams: 1,
            ..H2Limits::default()
        }),
    };
    c.feed(Peer::Client, &client_preface());
    c.feed(Peer::Server, &[settings(&[]), settings_ack()].concat());
    for id in [1, 3, 5, 7, 9] {
        c.feed(Peer::Client, &get(id));
    }
    for id in [1, 3, 5, 7, 9] {
        c.feed(Peer::Server, &status(id, END_HEADERS | END_STREAM));
    }
    assert!(!c.decoder.is_tunnel(), "requests ended: none is kept open");
    assert!(!c.idle(), "the fifth stream was not followed");
}
