//! What the mirror engine submits: one request copy, its head complete and its body streaming.
//!
//! A copy whose original was complete when it was submitted (most are: a head and a small body
//! arrive in one read) carries its whole body along. Otherwise the rest of the body travels in its
//! own channel so that the copy can be on the wire while the original is still arriving; a copy
//! whose body channel ends without [`BodyChunk::End`] is never completed on the wire. Only
//! complete copies may share a connection with others (pipelined, written together).

use bytes::Bytes;
use tokio::sync::mpsc;

/// One request copy, produced by the mirror engine while the original streams to the primary.
#[derive(Debug)]
pub struct ShadowRequest {
    /// Complete head to send: request line, headers and the final CRLF, already rewritten (Host
    /// etc.). It is written as it is.
    pub head: Bytes,
    /// Framing of the copy's body, the same as the original's.
    pub body: BodyFraming,
    /// Body bytes received before the copy was submitted, in order.
    pub body_ready: Vec<Bytes>,
    /// The rest of the body as it arrives; absent when the copy is complete (no body, or all of it
    /// in `body_ready`). The mirror engine sends [`BodyChunk::Data`] items and finally
    /// [`BodyChunk::End`]; a channel that closes without `End`, or a [`BodyChunk::Abort`], leaves
    /// the copy incomplete: it is never finished on the wire, its connection is closed and it is
    /// counted as `aborted`.
    pub body_rx: Option<mpsc::Receiver<BodyChunk>>,
    /// The copy is a HEAD request, so its response has no body whatever its headers say.
    pub is_head: bool,
    /// Set when the copy's answer is compared with the primary's: it is captured, not just
    /// read, and handed to the pair (or the copy's failure is).
    pub compare: Option<super::Compared>,
}

/// How the copy's body is delimited on the wire (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes follow the head.
    ContentLength(u64),
    /// Chunked: the body chunks are the raw wire bytes, size lines and trailers included.
    Chunked,
}

/// One item of a copy's body stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyChunk {
    /// The next body bytes, as they came from the client.
    Data(Bytes),
    /// The body is complete.
    End,
    /// The original broke off (client gone, body too large for mirroring, ...): drop the copy.
    Abort,
}

impl ShadowRequest {
    /// The whole copy is here: it can be written at once, together with others.
    pub fn is_complete(&self) -> bool {
        self.body_rx.is_none()
    }

    /// Bytes of the copy held now.
    pub fn len(&self) -> usize {
        self.head.len() + self.body_ready.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BodyFraming {
    /// Whether body bytes follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Self::None | Self::ContentLength(0))
    }
}
