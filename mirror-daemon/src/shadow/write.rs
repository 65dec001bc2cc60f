//! Writing a copy: its raw head, then its body bytes as they arrive from the original.
//!
//! The bytes are written exactly as the mirror engine produced them, not through an HTTP client
//! such as hyper: that is the point of a byte-faithful copy. A client library would normalize
//! header case and order and re-frame the body, so the shadow would not see what the primary saw.
//!
//! A copy must never be completed on the wire unless its original was: the last byte received is
//! always held back until [`BodyChunk::End`] arrives. An original that breaks off therefore leaves
//! its copy one byte short at least, whatever the framing, and the shadow never acts on it.

use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use super::{
    error::{Abort, Failure, Phase},
    request::{BodyChunk, BodyFraming},
};

/// Slices handed to one `writev`.
const MAX_SLICES: usize = 64;

fn lost(source: std::io::Error) -> Failure {
    Failure::Io {
        phase: Phase::Sending,
        source,
    }
}

/// Writes head and body; `Ok` once the complete request is on its way. `ready` is the body
/// received so far; `body` the stream of the rest, or `None` when `ready` is all of it.
pub(super) async fn write_request<W: AsyncWrite + Unpin>(
    io: &mut W,
    head: &Bytes,
    framing: BodyFraming,
    ready: &[Bytes],
    body: Option<&mut mpsc::Receiver<BodyChunk>>,
) -> Result<(), Failure> {
    let declared = match framing {
        BodyFraming::ContentLength(length) => Some(length),
        BodyFraming::None | BodyFraming::Chunked => None,
    };
    let mut received: u64 = ready.iter().map(|b| b.len() as u64).sum();
    if let Some(length) = declared.filter(|length| received > *length) {
        return Err(Failure::Aborted(Abort::TooLong(length)));
    }
    let Some(body) = body else {
        if !framing.has_body() {
            return write_parts(io, &mut vec![head.clone()]).await;
        }
        // Complete: the whole body is here.
        if received == 0 && matches!(framing, BodyFraming::Chunked) {
            return Err(Failure::Aborted(Abort::NoBodyStream));
        }
        if let Some(length) = declared.filter(|length| received < *length) {
            return Err(Failure::Aborted(Abort::TooShort {
                missing: length - received,
            }));
        }
        let mut parts = Vec::with_capacity(1 + ready.len());
        parts.push(head.clone());
        parts.extend(ready.iter().cloned());
        return write_parts(io, &mut parts).await;
    };
    // Streaming: the head (and what is here of the body, but its last byte) goes out now.
    let mut parts = vec![head.clone()];
    let mut held = Bytes::new();
    if let Some((last, before)) = ready
        .iter()
        .filter(|b| !b.is_empty())
        .collect::<Vec<_>>()
        .split_last()
    {
        parts.extend(before.iter().map(|b| (*b).clone()));
        parts.push(last.slice(..last.len() - 1));
        held = last.slice(last.len() - 1..);
    }
    write_parts(io, &mut parts).await?;
    loop {
        match body.recv().await {
            Some(BodyChunk::Data(data)) => {
                if data.is_empty() {
                    continue;
                }
                received += data.len() as u64;
                if let Some(length) = declared.filter(|length| received > *length) {
                    return Err(Failure::Aborted(Abort::TooLong(length)));
                }
                let last = data.len() - 1;
                let mut out = held.chain(data.slice(..last));
                io.write_all_buf(&mut out).await.map_err(lost)?;
                io.flush().await.map_err(lost)?;
                held = data.slice(last..);
            }
            Some(BodyChunk::End) => {
                if let Some(length) = declared.filter(|length| received < *length) {
                    return Err(Failure::Aborted(Abort::TooShort {
                        missing: length - received,
                    }));
                }
                io.write_all(&held).await.map_err(lost)?;
                io.flush().await.map_err(lost)?;
                return Ok(());
            }
            Some(BodyChunk::Abort) => return Err(Failure::Aborted(Abort::Original)),
            None => return Err(Failure::Aborted(Abort::StreamClosed)),
        }
    }
}

/// Writes `parts` in order, in as few writes as the stream allows: `writev` on plain TCP, one
/// buffer on a stream that cannot write vectors (TLS: a record per slice would cost more).
/// Empties `parts` as it goes.
pub(super) async fn write_parts<W: AsyncWrite + Unpin>(
    io: &mut W,
    parts: &mut Vec<Bytes>,
) -> Result<(), Failure> {
    parts.retain(|part| !part.is_empty());
    if parts.len() > 1 && !io.is_write_vectored() {
        let mut joined = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
        for part in parts.drain(..) {
            joined.extend_from_slice(&part);
        }
        parts.push(joined.freeze());
    }
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<IoSlice<'_>> = parts[first..]
            .iter()
            .take(MAX_SLICES)
            .map(|part| IoSlice::new(part))
            .collect();
        let mut written = io.write_vectored(&slices).await.map_err(lost)?;
        if written == 0 {
            return Err(lost(std::io::ErrorKind::WriteZero.into()));
        }
        while written > 0 {
            let part = &mut parts[first];
            let step = written.min(part.len());
            part.advance(step);
            written -= step;
            if part.is_empty() {
                first += 1;
            }
        }
    }
    parts.clear();
    io.flush().await.map_err(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n";

    fn head() -> Bytes {
        Bytes::from_static(HEAD)
    }

    /// Writes a copy whose body stream yields `chunks` (then closes); returns what went on the
    /// wire and how it ended.
    async fn write(framing: BodyFraming, chunks: &[BodyChunk]) -> (Vec<u8>, Result<(), Failure>) {
        let (tx, mut rx) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(chunk.clone()).expect("room for every chunk");
        }
        drop(tx);
        let mut wire = Vec::new();
        let result = write_request(&mut wire, &head(), framing, &[], Some(&mut rx)).await;
        (wire, result)
    }

    fn data(bytes: &'static [u8]) -> BodyChunk {
        BodyChunk::Data(Bytes::from_static(bytes))
    }

    #[tokio::test]
    async fn a_complete_body_is_written_byte_for_byte() {
        let (wire, result) = write(
            BodyFraming::ContentLength(6),
            &[data(b"abc"), data(b""), data(b"def"), BodyChunk::End],
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(wire, [HEAD, b"abcdef"].concat());
    }

    #[tokio::test]
    async fn chunked_bytes_pass_through_raw() {
        let raw: &[&'static [u8]] = &[b"3;ext\r\nabc\r\n", b"0\r\nTrailer: x\r\n\r\n"];
        let (wire, result) = write(
            BodyFraming::Chunked,
            &[data(raw[0]), data(raw[1]), BodyChunk::End],
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(wire, [HEAD, &raw.concat()].concat());
    }

    #[tokio::test]
    async fn a_broken_off_original_leaves_the_copy_incomplete_even_with_every_byte_received() {
        for (ending, expected) in [
            (Some(BodyChunk::Abort), "the original's body broke off"),
            (None, "the body stream ended without its end"),
        ] {
            let mut chunks = vec![data(b"abc"), data(b"def")];
            chunks.extend(ending);
            let (wire, result) = write(BodyFraming::ContentLength(6), &chunks).await;
            let error = result.expect_err("aborted");
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!(
                wire,
                [HEAD, b"abcde"].concat(),
                "the last byte is held back"
            );
        }
    }

    #[tokio::test]
    async fn a_body_not_matching_its_content_length_is_aborted() {
        let (wire, result) = write(
            BodyFraming::ContentLength(6),
            &[data(b"abc"), data(b"defg"), BodyChunk::End],
        )
        .await;
        assert!(matches!(result, Err(Failure::Aborted(Abort::TooLong(6)))));
        assert_eq!(wire, [HEAD, b"ab"].concat());
        let (_, result) = write(
            BodyFraming::ContentLength(6),
            &[data(b"abc"), BodyChunk::End],
        )
        .await;
        assert!(matches!(
            result,
            Err(Failure::Aborted(Abort::TooShort { missing: 3 }))
        ));
    }

    #[tokio::test]
    async fn a_copy_without_body_needs_no_body_stream() {
        let mut wire = Vec::new();
        let result = write_request(&mut wire, &head(), BodyFraming::None, &[], None).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(wire, HEAD);
        let result = write_request(&mut wire, &head(), BodyFraming::Chunked, &[], None).await;
        assert!(matches!(result, Err(Failure::Aborted(Abort::NoBodyStream))));
    }

    #[tokio::test]
    async fn a_complete_copy_goes_out_whole_and_must_match_its_length() {
        let ready = [Bytes::from_static(b"abc"), Bytes::from_static(b"def")];
        let mut wire = Vec::new();
        let result = write_request(
            &mut wire,
            &head(),
            BodyFraming::ContentLength(6),
            &ready,
            None,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(wire, [HEAD, b"abcdef"].concat());
        let mut wire = Vec::new();
        let result = write_request(
            &mut wire,
            &head(),
            BodyFraming::ContentLength(7),
            &ready,
            None,
        )
        .await;
        assert!(matches!(
            result,
            Err(Failure::Aborted(Abort::TooShort { missing: 1 }))
        ));
        assert!(
            wire.is_empty(),
            "nothing of a short complete copy is written"
        );
    }

    #[tokio::test]
    async fn what_arrived_before_submission_is_sent_but_its_last_byte_while_the_rest_streams() {
        let (tx, mut rx) = mpsc::channel(4);
        tx.try_send(data(b"ef")).expect("room");
        drop(tx);
        let mut wire = Vec::new();
        let result = write_request(
            &mut wire,
            &head(),
            BodyFraming::ContentLength(6),
            &[Bytes::from_static(b"abcd")],
            Some(&mut rx),
        )
        .await;
        assert!(matches!(result, Err(Failure::Aborted(Abort::StreamClosed))));
        assert_eq!(wire, [HEAD, b"abcde"].concat(), "held back: the last byte");
    }

    /// A writer that takes at most `step` bytes per write, vectored or not.
    struct Trickle {
        wire: Vec<u8>,
        step: usize,
        writes: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.wire.extend_from_slice(&buf[..n]);
            self.writes += 1;
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.step - n);
                self.wire.extend_from_slice(&buf[..take]);
                n += take;
                if n == self.step {
                    break;
                }
            }
            self.writes += 1;
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn parts_go_out_in_one_vectored_write_and_survive_partial_writes() {
        let parts = || {
            vec![
                Bytes::from_static(b"GET /a HTTP/1.1\r\n\r\n"),
                Bytes::new(),
                Bytes::from_static(b"POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n"),
                Bytes::from_static(b"ok"),
            ]
        };
        let expected: Vec<u8> = parts().concat();
        let mut whole = Trickle {
            wire: Vec::new(),
            step: usize::MAX,
            writes: 0,
        };
        write_parts(&mut whole, &mut parts())
            .await
            .expect("written");
        assert_eq!(whole.wire, expected);
        assert_eq!(whole.writes, 1, "one writev for every part");
        let mut trickle = Trickle {
            wire: Vec::new(),
            step: 5,
            writes: 0,
        };
        write_parts(&mut trickle, &mut parts())
            .await
            .expect("written");
        assert_eq!(
            trickle.wire, expected,
            "partial writes resume where they stopped"
        );
    }
}
