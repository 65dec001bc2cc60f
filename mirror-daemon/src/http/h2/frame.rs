//! HTTP/2 frame headers (RFC 9113 section 4.1), read the same way in both directions.
//!
//! Every frame starts with a 9-byte header: a 24-bit payload length, a type, flags and a 31-bit
//! stream identifier. [`FrameHeaderReader`] collects one header across chunk boundaries in a fixed
//! array (no heap), so that between frames a connection holds nothing but the 9 bytes; what the
//! payload means is the decoder's business.

/// The connection preface a client sends first (RFC 9113 section 3.4).
pub const CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Size of a frame header on the wire.
pub const FRAME_HEADER_LEN: usize = 9;

/// The initial and smallest SETTINGS_MAX_FRAME_SIZE (RFC 9113 section 6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1 << 14;

/// The largest SETTINGS_MAX_FRAME_SIZE a peer may announce.
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// Frame flags (RFC 9113 section 6); each is defined only for some frame types.
pub mod flags {
    /// DATA, HEADERS: the sender's last frame on this stream.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: an acknowledgement.
    pub const ACK: u8 = 0x1;
    /// HEADERS, PUSH_PROMISE, CONTINUATION: the field block ends with this frame.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS, PUSH_PROMISE: a pad length byte leads the payload.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: stream dependency and weight (5 bytes) follow the pad length.
    pub const PRIORITY: u8 = 0x20;
}

/// The frame types of RFC 9113 section 6; any other type is an extension to be ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    /// An extension frame (ALTSVC, ORIGIN, PRIORITY_UPDATE, ...); RFC 9113 section 5.5 says to
    /// ignore it, except inside a field block.
    Unknown(u8),
}

impl FrameType {
    fn from_byte(byte: u8) -> Self {
        match byte {
            0x0 => Self::Data,
            0x1 => Self::Headers,
            0x2 => Self::Priority,
            0x3 => Self::RstStream,
            0x4 => Self::Settings,
            0x5 => Self::PushPromise,
            0x6 => Self::Ping,
            0x7 => Self::GoAway,
            0x8 => Self::WindowUpdate,
            0x9 => Self::Continuation,
            other => Self::Unknown(other),
        }
    }
}

/// One parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length in bytes (24 bits).
    pub length: u32,
    pub kind: FrameType,
    pub flags: u8,
    /// The stream identifier, reserved bit cleared (RFC 9113 section 4.1: ignored on receipt).
    pub stream: u32,
}

impl FrameHeader {
    /// Parses the 9 header bytes.
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> Self {
        Self {
            length: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: FrameType::from_byte(bytes[3]),
            flags: bytes[4],
            stream: read_u31(&[bytes[5], bytes[6], bytes[7], bytes[8]]),
        }
    }

    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A 31-bit value (stream identifier, window increment) with its reserved top bit cleared.
pub fn read_u31(bytes: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*bytes) & 0x7fff_ffff
}

/// Collects a frame header that may arrive split over several chunks.
#[derive(Debug, Default, Clone)]
pub struct FrameHeaderReader {
    bytes: [u8; FRAME_HEADER_LEN],
    filled: usize,
}

impl FrameHeaderReader {
    /// Takes bytes from `input` up to the end of the header; returns how many it took and the
    /// header once complete (the reader is then empty again).
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<FrameHeader>) {
        let taken = (FRAME_HEADER_LEN - self.filled).min(input.len());
        self.bytes[self.filled..self.filled + taken].copy_from_slice(&input[..taken]);
        self.filled += taken;
        if self.filled < FRAME_HEADER_LEN {
            return (taken, None);
        }
        self.filled = 0;
        (taken, Some(FrameHeader::parse(&self.bytes)))
    }

    /// Whether part of a header has been read.
    pub fn is_partial(&self) -> bool {
        self.filled > 0
    }
}

/// Collects a small fixed-size piece of a payload (at most 8 bytes: a PING, the start of a
/// GOAWAY, one SETTINGS entry, a pad length and priority fields) across chunks, without heap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallBuf {
    bytes: [u8; 8],
    filled: u8,
    needed: u8,
}

impl SmallBuf {
    /// A collector for `needed` bytes (at most 8).
    pub fn new(needed: usize) -> Self {
        debug_assert!(needed <= 8);
        Self {
            bytes: [0; 8],
            filled: 0,
            needed: needed.min(8) as u8,
        }
    }

    /// Takes what it still needs from `input`; returns how many bytes it took.
    pub fn push(&mut self, input: &[u8]) -> usize {
        let want = usize::from(self.needed - self.filled);
        let taken = want.min(input.len());
        let start = usize::from(self.filled);
        self.bytes[start..start + taken].copy_from_slice(&input[..taken]);
        self.filled += taken as u8;
        taken
    }

    pub fn is_complete(&self) -> bool {
        self.filled == self.needed
    }

    /// The collected bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.filled)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parses_length_type_flags_and_stream_without_reserved_bit() {
        let header = FrameHeader::parse(&[0x01, 0x02, 0x03, 0x01, 0x25, 0x80, 0x00, 0x00, 0x05]);
        assert_eq!(header.length, 0x010203);
        assert_eq!(header.kind, FrameType::Headers);
        assert!(header.has(flags::END_STREAM) && header.has(flags::END_HEADERS));
        assert!(header.has(flags::PRIORITY) && !header.has(flags::PADDED));
        assert_eq!(header.stream, 5, "the reserved bit is ignored");
        assert_eq!(
            FrameHeader::parse(&[0, 0, 0, 0xfa, 0, 0, 0, 0, 0]).kind,
            FrameType::Unknown(0xfa)
        );
    }

    #[test]
    fn header_reader_joins_split_headers() {
        let wire = [0, 0, 8, 6, 0, 0, 0, 0, 0];
        for split in 0..=wire.len() {
            let mut reader = FrameHeaderReader::default();
            let (first, none) = reader.push(&wire[..split]);
            assert_eq!(first, split);
            if split < wire.len() {
                assert!(none.is_none());
                assert_eq!(reader.is_partial(), split > 0);
                let (rest, header) = reader.push(&wire[split..]);
                assert_eq!(rest, wire.len() - split);
                assert_eq!(
                    header.map(|h| (h.kind, h.length)),
                    Some((FrameType::Ping, 8))
                );
            } else {
                assert_eq!(none.map(|h| h.kind), Some(FrameType::Ping));
            }
            assert!(!reader.is_partial());
        }
    }

    #[test]
    fn small_buf_takes_only_what_it_needs() {
        let mut buf = SmallBuf::new(5);
        assert_eq!(buf.push(&[1, 2]), 2);
        assert!(!buf.is_complete());
        assert_eq!(buf.push(&[3, 4, 5, 6, 7]), 3);
        assert!(buf.is_complete());
        assert_eq!(buf.bytes(), &[1, 2, 3, 4, 5]);
        assert_eq!(buf.push(&[8]), 0);
    }
}
