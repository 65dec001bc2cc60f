//! The HTTP/2 decoder against an independent server: the `h2` crate's, reading the same client
//! bytes in memory.
//!
//! Input: what the client sends after its preface and an empty SETTINGS frame (both put in
//! front). The bytes go to an h2 server one frame at a time, the server running until idle after
//! each (a current-thread runtime with paused time), and the server's answers go to the decoder's
//! primary side right after the frame that caused them, as a relay would pass them on.
//! Checks: every request the decoder reports complete (and does not abandon after a reset or
//! GOAWAY) is one h2's server delivered whole, with the same method, path, fields, body and
//! trailers; and unless the decoder tunnelled, every request h2 delivered whole the decoder
//! reports too, except the kinds it skips on purpose (CONNECT, pseudo-headers in trailers, a
//! missing `:path`, field sections over its limit). One kind the decoder takes where h2 does
//! not: gRPC's true-binary metadata (a `-bin` value starting with NUL).
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mirror_daemon::http::h2::{H2Limits, Peer, SkipReason, CLIENT_PREFACE};
use mirror_fuzz::h2::{self, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// The client's bytes cut into frames (the last one possibly partial).
fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = vec![&bytes[..CLIENT_PREFACE.len()]];
    let mut pos = CLIENT_PREFACE.len();
    while pos < bytes.len() {
        let header = &bytes[pos..bytes.len().min(pos + 9)];
        let length = if header.len() == 9 {
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
        } else {
            0
        };
        let end = bytes.len().min(pos + 9 + length);
        out.push(&bytes[pos..end]);
        pos = end;
    }
    out
}

type Served = Arc<Mutex<BTreeMap<u32, Request>>>;

/// h2's server: records each request it delivers whole.
async fn serve(io: tokio::io::DuplexStream, served: Served) {
    let Ok(mut connection) = h2::server_builder().handshake::<_, Bytes>(io).await else {
        return;
    };
    while let Some(Ok((request, _respond))) = connection.accept().await {
        let id = _respond.stream_id().as_u32();
        let served = served.clone();
        tokio::spawn(async move {
            let _respond = _respond;
            let (parts, mut body) = request.into_parts();
            let mut seen = Request {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                fields: h2::sorted(parts.headers.iter()),
                ..Request::default()
            };
            while let Some(chunk) = body.data().await {
                let Ok(chunk) = chunk else { return };
                let _ = body.flow_control().release_capacity(chunk.len());
                seen.body.extend_from_slice(&chunk);
            }
            let Ok(trailers) = body.trailers().await else {
                return;
            };
            seen.trailers = trailers
                .as_ref()
                .map(|t| h2::sorted(t.iter()))
                .unwrap_or_default();
            served.lock().expect("served").insert(id, seen);
            // Keep the stream (and `_respond`) until the connection ends.
            std::future::pending::<()>().await;
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let client_bytes = [&CLIENT_PREFACE[..], CLIENT_SETTINGS, data].concat();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let served: Served = Arc::default();
    let script = runtime.block_on(async {
        let (client, server_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(server_io, served.clone()));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (mut read_half, mut write_half) = tokio::io::split(client);
        // Collects the server's answers until it closes; runs beside the writer, so that what
        // the server sends last (a GOAWAY, say) is still passed on.
        tokio::spawn({
            let answers = answers.clone();
            async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = read_half.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    answers
                        .lock()
                        .expect("answers")
                        .extend_from_slice(&buf[..n]);
                }
            }
        });
        let mut script: Vec<(Peer, Vec<u8>)> = Vec::new();
        for frame in frames(&client_bytes) {
            let _ = write_half.write_all(frame).await;
            script.push((Peer::Client, frame.to_vec()));
            // Paused time moves on only when every task is idle: the server has read and
            // answered everything so far.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let answer = std::mem::take(&mut *answers.lock().expect("answers"));
            if !answer.is_empty() {
                script.push((Peer::Server, answer));
            }
        }
        script
    });
    drop(runtime);

    let events = h2::decode(
        H2Limits::default(),
        script.iter().map(|(p, c)| (*p, &c[..])),
    );
    let described = h2::describe(&events);
    let served = served.lock().expect("served");
    for (id, request) in &described.complete {
        // gRPC's true-binary metadata (a `-bin` value starting with NUL) is taken and kept
        // base64-encoded on purpose; h2 refuses the NUL.
        let true_binary = served.get(id).is_none()
            && request
                .fields
                .iter()
                .chain(&request.trailers)
                .any(|(name, _)| name.ends_with("-bin"));
        if true_binary {
            continue;
        }
        assert_eq!(
            served.get(id),
            Some(request),
            "stream {id}: the decoder reports a request h2 did not deliver so\nevents: {events:?}"
        );
    }
    if !described.tunnelled {
        for (id, request) in served.iter() {
            // Where the decoder is stricter than h2, on purpose: CONNECT is not copied; RFC 9113
            // forbids pseudo-headers in trailers (h2 drops them) and requires `:path` (h2 takes
            // a request without one as `/`); the field section limit is the decoder's own.
            let skipped_on_purpose = matches!(
                described.skipped.get(id),
                Some(
                    SkipReason::Connect
                        | SkipReason::PseudoHeaderInTrailers
                        | SkipReason::MissingPseudoHeader
                        | SkipReason::HeaderListTooLarge
                )
            );
            assert!(
                skipped_on_purpose || described.complete.get(id) == Some(request),
                "stream {id}: h2 delivered {request:?}, the decoder {:?}\nevents: {events:?}",
                described.complete.get(id)
            );
        }
    }
});
