//! A validating pass over a chunked body (RFC 9112 section 7.1), one chunk of input at a time.
//!
//! The body is never buffered or decoded: [`ChunkedBody::advance`] only says how many of the
//! bytes it was given belong to the body and whether the body ended or broke the grammar
//! ([`ChunkedBody::advance_reporting_data`] also says where the chunk data is, for readers of
//! the payload). Chunk data is skipped by its declared length without looking at it; only size lines, extensions,
//! the CRLF after data and the trailer section are read byte by byte. The grammar is taken
//! strictly: sizes are 1 to 16 hex digits directly followed by `;` or CRLF (no whitespace, no
//! sign, no `0x`), every line ends in CRLF, trailer lines are `name: value`.

use std::ops::Range;

use super::head::{is_control, is_tchar};
use super::{FramingLimits, TunnelReason};

/// Where a chunked body is, between two calls to [`ChunkedBody::advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkedBody {
    state: State,
    trailer_bytes: usize,
    trailer_fields: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first hex digit of a chunk-size.
    SizeStart,
    Size {
        size: u64,
        digits: u8,
    },
    /// After a `;` on a size line, until its CR.
    Extension {
        size: u64,
    },
    /// After the CR of a size line.
    SizeLf {
        size: u64,
    },
    Data {
        remaining: u64,
    },
    /// After chunk data, at its CR.
    DataCr,
    DataLf,
    /// After the last-chunk line: a trailer field or the final CRLF.
    TrailerLineStart,
    TrailerName,
    /// Whitespace after a trailer name; only more whitespace is legal, and a colon is not.
    TrailerNameWhitespace,
    TrailerValue,
    TrailerLf,
    /// After the CR of the final CRLF.
    FinalLf,
}

/// How far [`ChunkedBody::advance`] got in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advance {
    /// Leading bytes of the input that belong to the body (valid so far).
    pub(crate) consumed: usize,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The whole input belongs to the body, which continues.
    NeedMore,
    /// The body ended with the last `consumed` byte.
    Done,
    /// The byte after the `consumed` ones breaks the chunked grammar.
    Invalid(TunnelReason),
}

impl Default for ChunkedBody {
    fn default() -> Self {
        Self {
            state: State::SizeStart,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }
}

impl ChunkedBody {
    /// Walks `input`, the next bytes of the body.
    pub(crate) fn advance(&mut self, input: &[u8], limits: &FramingLimits) -> Advance {
        self.advance_reporting_data(input, limits, |_| {})
    }

    /// Walks `input` like [`advance`](Self::advance), calling `on_data` with each non-empty
    /// range of `input` that is chunk data (the payload), in order.
    pub(crate) fn advance_reporting_data(
        &mut self,
        input: &[u8],
        limits: &FramingLimits,
        mut on_data: impl FnMut(Range<usize>),
    ) -> Advance {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { remaining } = self.state {
                let available = input.len() - i;
                let skipped = usize::try_from(remaining).map_or(available, |r| r.min(available));
                on_data(i..i + skipped);
                i += skipped;
                self.state = match remaining - skipped as u64 {
                    0 => State::DataCr,
                    remaining => State::Data { remaining },
                };
                continue;
            }
            match self.step(input[i], limits) {
                Ok(false) => i += 1,
                Ok(true) => {
                    return Advance {
                        consumed: i + 1,
                        outcome: Outcome::Done,
                    }
                }
                Err(reason) => {
                    return Advance {
                        consumed: i,
                        outcome: Outcome::Invalid(reason),
                    }
                }
            }
        }
        Advance {
            consumed: input.len(),
            outcome: Outcome::NeedMore,
        }
    }

    /// Takes one byte outside chunk data; `Ok(true)` when it was the last byte of the body.
    fn step(&mut self, byte: u8, limits: &FramingLimits) -> Result<bool, TunnelReason> {
        use State::*;
        if self.state.in_trailers() {
            self.trailer_bytes += 1;
            if self.trailer_bytes > limits.max_header_bytes {
                return Err(TunnelReason::TrailerSectionTooLarge);
            }
        }
        self.state = match (self.state, byte) {
            (SizeStart, _) => match hex_value(byte) {
                Some(digit) => Size {
                    size: digit,
                    digits: 1,
                },
                None => return Err(TunnelReason::InvalidChunkSize),
            },
            (Size { size, digits }, _) => match (hex_value(byte), byte) {
                // 16 hex digits hold any u64, so this bound also rules out overflow.
                (Some(_), _) if digits == 16 => return Err(TunnelReason::InvalidChunkSize),
                (Some(digit), _) => Size {
                    size: (size << 4) | digit,
                    digits: digits + 1,
                },
                (None, b';') => Extension { size },
                (None, b'\r') => SizeLf { size },
                (None, b'\n') => return Err(TunnelReason::BareLf),
                (None, _) => return Err(TunnelReason::InvalidChunkSize),
            },
            (Extension { size }, b'\r') => SizeLf { size },
            (Extension { .. }, b'\n') => return Err(TunnelReason::BareLf),
            // Extensions are not interpreted, only kept free of control bytes: whatever their
            // grammar, a CRLF cannot occur inside one, so the line end is never in doubt.
            (Extension { .. }, _) if is_control(byte) => {
                return Err(TunnelReason::InvalidChunkExtension)
            }
            (Extension { size }, _) => Extension { size },
            (SizeLf { size: 0 }, b'\n') => TrailerLineStart,
            (SizeLf { size }, b'\n') => Data { remaining: size },
            (DataLf, b'\n') => SizeStart,
            (TrailerLf, b'\n') => TrailerLineStart,
            (FinalLf, b'\n') => return Ok(true),
            (SizeLf { .. } | DataLf | TrailerLf | FinalLf, _) => return Err(TunnelReason::BareCr),
            (Data { remaining }, _) => match remaining {
                0 | 1 => DataCr,
                _ => Data {
                    remaining: remaining - 1,
                },
            },
            (DataCr, b'\r') => DataLf,
            (DataCr, b'\n') => return Err(TunnelReason::BareLf),
            (DataCr, _) => return Err(TunnelReason::MissingChunkDataCrlf),
            (TrailerLineStart, b'\r') => FinalLf,
            (TrailerLineStart, b' ' | b'\t') => return Err(TunnelReason::ObsFold),
            (TrailerLineStart, _) if is_tchar(byte) => {
                self.trailer_fields += 1;
                if self.trailer_fields > limits.max_headers {
                    return Err(TunnelReason::TrailerSectionTooLarge);
                }
                TrailerName
            }
            (TrailerName, b':') => TrailerValue,
            (TrailerName, b' ' | b'\t') => TrailerNameWhitespace,
            (TrailerName, _) if is_tchar(byte) => TrailerName,
            (TrailerNameWhitespace, b':') => return Err(TunnelReason::WhitespaceBeforeColon),
            (TrailerNameWhitespace, b' ' | b'\t') => TrailerNameWhitespace,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if !is_control(byte) && byte != b'\n' => TrailerValue,
            (TrailerLineStart | TrailerName | TrailerNameWhitespace | TrailerValue, b'\n') => {
                return Err(TunnelReason::BareLf)
            }
            (TrailerLineStart | TrailerName | TrailerNameWhitespace | TrailerValue, _) => {
                return Err(TunnelReason::InvalidTrailer)
            }
        };
        Ok(false)
    }
}

impl State {
    fn in_trailers(self) -> bool {
        matches!(
            self,
            State::TrailerLineStart
                | State::TrailerName
                | State::TrailerNameWhitespace
                | State::TrailerValue
                | State::TrailerLf
                | State::FinalLf
        )
    }
}

fn hex_value(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::{Advance, ChunkedBody, Outcome};
    use crate::http::{FramingLimits, TunnelReason};

    fn advance(input: &[u8]) -> Advance {
        ChunkedBody::default().advance(input, &FramingLimits::default())
    }

    #[test]
    fn body_ends_after_final_crlf_and_leaves_the_rest() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        let input = [&body[..], b"GET / HTTP/1.1\r\n"].concat();
        assert_eq!(
            advance(&input),
            Advance {
                consumed: body.len(),
                outcome: Outcome::Done
            }
        );
    }

    #[test]
    fn invalid_byte_is_not_consumed() {
        assert_eq!(
            advance(b"5\r\nhelloX"),
            Advance {
                consumed: 8,
                outcome: Outcome::Invalid(TunnelReason::MissingChunkDataCrlf)
            }
        );
    }

    #[test]
    fn chunk_data_is_skipped_by_length_across_calls() {
        let mut body = ChunkedBody::default();
        let limits = FramingLimits::default();
        assert_eq!(
            body.advance(b"a\r\n0\r\n", &limits).outcome,
            Outcome::NeedMore
        );
        // "0\r\n" above and "\r\n" here are data, not a last chunk.
        assert_eq!(body.advance(b"\r\n", &limits).outcome, Outcome::NeedMore);
        assert_eq!(
            body.advance(b"12345\r\n0\r\n\r\n", &limits),
            Advance {
                consumed: 12,
                outcome: Outcome::Done
            }
        );
    }

    #[test]
    fn sixteen_hex_digits_hold_u64_max() {
        assert_eq!(advance(b"FFFFFFFFFFFFFFFF\r\n").outcome, Outcome::NeedMore);
        assert_eq!(
            advance(b"0FFFFFFFFFFFFFFFF\r\n").outcome,
            Outcome::Invalid(TunnelReason::InvalidChunkSize)
        );
    }
}
