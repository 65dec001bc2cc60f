//! Writing a copy: its raw head, then its body bytes as they arrive from the original.
//!
//! The bytes are written exactly as the mirror engine produced them, not through an HTTP client
//! such as hyper: that is the point of a byte-faithful copy. A client library would normalize
//! header case and order and re-frame the body, so the shadow would not see what the primary saw.
//!
//! A copy must never be completed on the wire unless its original was: the last byte received is
//! always held back until [`BodyChunk::End`] arrives. An original that breaks off therefore leaves
//! its copy one byte short at least, whatever the framing, and the shadow never acts on it.

use bytes::{Buf, Bytes};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use super::{
    error::{Abort, Failure, Phase},
    request::{BodyChunk, BodyFraming},
};

/// Writes head and body; `Ok` once the complete request is on its way.
pub(super) async fn write_request<W: AsyncWrite + Unpin>(
    io: &mut W,
    head: &[u8],
    framing: BodyFraming,
    body: Option<&mut mpsc::Receiver<BodyChunk>>,
) -> Result<(), Failure> {
    let lost = |source| Failure::Io {
        phase: Phase::Sending,
        source,
    };
    io.write_all(head).await.map_err(lost)?;
    // The head goes out now, before any body arrives.
    io.flush().await.map_err(lost)?;
    if !framing.has_body() {
        return Ok(());
    }
    let body = body.ok_or(Failure::Aborted(Abort::NoBodyStream))?;
    let declared = match framing {
        BodyFraming::ContentLength(length) => Some(length),
        BodyFraming::None | BodyFraming::Chunked => None,
    };
    let mut received = 0u64;
    let mut held = Bytes::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n";

    /// Writes a copy whose body stream yields `chunks` (then closes); returns what went on the
    /// wire and how it ended.
    async fn write(framing: BodyFraming, chunks: &[BodyChunk]) -> (Vec<u8>, Result<(), Failure>) {
        let (tx, mut rx) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(chunk.clone()).expect("room for every chunk");
        }
        drop(tx);
        let mut wire = Vec::new();
        let result = write_request(&mut wire, HEAD, framing, Some(&mut rx)).await;
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
        let result = write_request(&mut wire, HEAD, BodyFraming::None, None).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(wire, HEAD);
        let result = write_request(&mut wire, HEAD, BodyFraming::Chunked, None).await;
        assert!(matches!(result, Err(Failure::Aborted(Abort::NoBodyStream))));
    }
}
