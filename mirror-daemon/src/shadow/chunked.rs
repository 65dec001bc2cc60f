//! Finding the end of a chunked response body (RFC 9112 section 7.1) without keeping any of it.
//!
//! [`ChunkedDrain::advance`] is fed whatever bytes arrived and says how many belong to the body
//! and whether it ended. Chunk data is skipped by its declared size; size lines, extensions and
//! trailers are walked and forgotten (extension and trailer text a run at a time, up to its line
//! end), so memory stays fixed however long the body; extensions and trailers are bounded, so
//! a broken server cannot stream either forever.
//! Being a reader of responses we only discard, it is strict only where framing depends on it:
//! sizes are hex (at most 16 digits), every line ends in CRLF, data ends where its size says.

use super::error::ProtocolError;

/// The trailer section may be at most this long, so a broken server cannot stream trailers
/// forever.
const MAX_TRAILER_BYTES: usize = 64 * 1024;
/// The chunk extensions of a body may be at most this long in all (as hyper bounds them).
const MAX_EXTENSION_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChunkedDrain {
    state: State,
    trailer_bytes: usize,
    extension_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first hex digit of a chunk size.
    SizeStart,
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeWhitespace {
        size: u64,
    },
    Extension {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer field or of the final CRLF.
    TrailerLineStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

impl Default for ChunkedDrain {
    fn default() -> Self {
        Self {
            state: State::SizeStart,
            trailer_bytes: 0,
            extension_bytes: 0,
        }
    }
}

fn invalid(what: &'static str) -> ProtocolError {
    ProtocolError::Chunked(what)
}

impl ChunkedDrain {
    /// Walks `input`: how many of its leading bytes belong to the body, and whether the body
    /// ended with the last of them.
    pub fn advance(&mut self, input: &[u8]) -> Result<(usize, bool), ProtocolError> {
        self.advance_reporting_data(input, |_| {})
    }

    /// [`advance`](Self::advance), calling `data` with each range of `input` that is chunk data
    /// (the body's payload), in order.
    pub fn advance_reporting_data(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, bool), ProtocolError> {
        let mut at = 0;
        while at < input.len() {
            if self.state == State::Done {
                break;
            }
            if let State::Data { remaining } = self.state {
                let available = (input.len() - at) as u64;
                let skip = remaining.min(available);
                if skip > 0 {
                    data(at..at + skip as usize);
                }
                at += skip as usize;
                self.state = match remaining - skip {
                    0 => State::DataCr,
                    remaining => State::Data { remaining },
                };
                continue;
            }
            if let State::Extension { .. } | State::TrailerLine = self.state {
                // Text up to the line's CR (or a bare LF, an error) changes nothing but a
                // count: skipped as one run.
                let rest = &input[at..];
                let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                if run > 0 {
                    self.count_text(run)?;
                    at += run;
                    continue;
                }
            }
            self.step(input[at])?;
            at += 1;
        }
        Ok((at, self.state == State::Done))
    }

    /// Counts `bytes` of extension or trailer text against their bounds.
    fn count_text(&mut self, bytes: usize) -> Result<(), ProtocolError> {
        if let State::Extension { .. } = self.state {
            self.extension_bytes += bytes;
            if self.extension_bytes > MAX_EXTENSION_BYTES {
                return Err(invalid("chunk extensions too long"));
            }
        } else {
            self.trailer_bytes += bytes;
            if self.trailer_bytes > MAX_TRAILER_BYTES {
                return Err(invalid("trailer section too large"));
            }
        }
        Ok(())
    }

    fn step(&mut self, byte: u8) -> Result<(), ProtocolError> {
        if let (State::Size { size, digits }, Some(digit)) = (self.state, hex(byte)) {
            if digits == 16 {
                return Err(invalid("chunk size too large"));
            }
            self.state = State::Size {
                size: size << 4 | digit,
                digits: digits + 1,
            };
            return Ok(());
        }
        self.state = match (self.state, byte) {
            (State::SizeStart, _) => State::Size {
                size: hex(byte).ok_or(invalid("chunk size expected"))?,
                digits: 1,
            },
            (State::Size { size, .. } | State::SizeWhitespace { size }, b' ' | b'\t') => {
                State::SizeWhitespace { size }
            }
            (State::Size { size, .. } | State::SizeWhitespace { size }, b';') => {
                State::Extension { size }
            }
            (
                State::Size { size, .. }
                | State::SizeWhitespace { size }
                | State::Extension { size },
                b'\r',
            ) => State::SizeLf { size },
            (State::Size { .. } | State::SizeWhitespace { .. }, _) => {
                return Err(invalid("bad byte in chunk size line"))
            }
            (State::Extension { .. }, b'\n') => return Err(invalid("bare LF in chunk extension")),
            (State::Extension { size }, _) => State::Extension { size },
            (State::SizeLf { size: 0 }, b'\n') => State::TrailerLineStart,
            (State::SizeLf { size }, b'\n') => State::Data { remaining: size },
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataCr, _) => return Err(invalid("chunk data longer than its size")),
            (State::DataLf, b'\n') => State::SizeStart,
            (State::TrailerLf, b'\n') => State::TrailerLineStart,
            (State::TrailerLineStart, b'\r') => State::FinalLf,
            (State::TrailerLineStart | State::TrailerLine, b'\n') => {
                return Err(invalid("bare LF in trailer section"))
            }
            (State::TrailerLine, b'\r') => State::TrailerLf,
            (State::TrailerLineStart | State::TrailerLine, _) => State::TrailerLine,
            (State::FinalLf, b'\n') => State::Done,
            (State::SizeLf { .. } | State::DataLf | State::TrailerLf | State::FinalLf, _) => {
                return Err(invalid("CR not followed by LF"))
            }
            (State::Data { .. } | State::Done, _) => self.state,
        };
        if matches!(
            self.state,
            State::TrailerLine | State::TrailerLf | State::FinalLf
        ) {
            self.trailer_bytes += 1;
            if self.trailer_bytes > MAX_TRAILER_BYTES {
                return Err(invalid("trailer section too large"));
            }
        }
        Ok(())
    }
}

fn hex(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `piece` bytes; returns where the body ended.
    fn drain(body: &[u8], piece: usize) -> Result<Option<usize>, ProtocolError> {
        let mut drain = ChunkedDrain::default();
        let mut at = 0;
        for part in body.chunks(piece) {
            let (consumed, done) = drain.advance(part)?;
            at += consumed;
            if done {
                return Ok(Some(at));
            }
            assert_eq!(
                consumed,
                part.len(),
                "an unfinished body consumes everything"
            );
        }
        Ok(None)
    }

    #[test]
    fn finds_the_end_of_a_body_with_extensions_and_trailers_in_any_split() {
        let body = b"5;name=\"v\"\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n";
        for piece in 1..=body.len() {
            let mut wire = body.to_vec();
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            assert_eq!(drain(&wire, piece), Ok(Some(body.len())), "piece {piece}");
        }
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        assert_eq!(drain(b"5\r\nhel", 2), Ok(None));
        assert_eq!(drain(b"0\r\nX-Trailer: 1\r\n", 3), Ok(None));
    }

    #[test]
    fn broken_framing_is_a_protocol_error() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhello!\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello\r\r",
            b"11111111111111111\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            assert!(
                matches!(drain(bad, 1), Err(ProtocolError::Chunked(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn endless_trailers_are_cut_off() {
        let mut body = b"0\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_TRAILER_BYTES + 1));
        assert_eq!(
            drain(&body, 4096),
            Err(ProtocolError::Chunked("trailer section too large"))
        );
    }

    #[test]
    fn endless_extensions_are_cut_off_in_any_split() {
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES + 1));
        for piece in [1, 7, 4096, body.len()] {
            assert_eq!(
                drain(&body, piece),
                Err(ProtocolError::Chunked("chunk extensions too long")),
                "piece {piece}"
            );
        }
        // The bound is on all of a body's extensions together, and reaching it is fine.
        let half = "a".repeat(MAX_EXTENSION_BYTES / 2);
        let within = format!("1;{half}\r\nx\r\n1;{half}\r\ny\r\n0\r\n\r\n");
        assert_eq!(drain(within.as_bytes(), 100), Ok(Some(within.len())));
        let over = format!("1;{half}\r\nx\r\n1;{half}a\r\ny\r\n0\r\n\r\n");
        assert_eq!(
            drain(over.as_bytes(), 100),
            Err(ProtocolError::Chunked("chunk extensions too long"))
        );
    }

    #[test]
    fn large_sizes_are_skipped_without_buffering() {
        let mut drain = ChunkedDrain::default();
        assert_eq!(drain.advance(b"ffffffff\r\n"), Ok((10, false)));
        assert_eq!(drain.advance(&[0; 65536]), Ok((65536, false)));
    }
}
