//! Undoing `Content-Encoding` (gzip, deflate, br) before bodies are compared, within the cap.
//!
//! Two answers that carry the same content, one compressed and one not (or compressed another
//! way), are equal; so each body is decoded first, by flate2 and brotli-decompressor. Decoding
//! never produces more than the rule's `max_body_bytes`: the output grows with what the decoder
//! yields, its capacity clamped to the cap, and one byte more makes the body over the cap, so a
//! decompression bomb costs at most the cap (plus the decoder's own window: 32 KiB for
//! gzip/deflate, at most 16 MiB for a br stream that declares it, for the time of the call).

use std::{borrow::Cow, io::Read};

/// The most codings one answer may stack (`Content-Encoding: gzip, br`); more is undecodable.
const MAX_CODINGS: usize = 4;

/// A body ready to compare.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded<'a> {
    Bytes(Cow<'a, [u8]>),
    /// Decoding would exceed the cap.
    OverCap,
    /// An unknown coding, or data that does not decode.
    Undecodable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
}

/// Why a coding could not be undone.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    OverCap,
    Corrupt,
}

/// `body` with the codings of `content_encoding` (a `Content-Encoding` value, or `None`) undone,
/// producing at most `cap` bytes.
pub(super) fn decode<'a>(
    body: &'a [u8],
    content_encoding: Option<&[u8]>,
    cap: usize,
) -> Decoded<'a> {
    let mut codings = [Coding::Gzip; MAX_CODINGS];
    let mut count = 0;
    for coding in content_encoding
        .unwrap_or_default()
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"))
    {
        let coding =
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                Coding::Gzip
            } else if coding.eq_ignore_ascii_case(b"deflate") {
                Coding::Deflate
            } else if coding.eq_ignore_ascii_case(b"br") {
                Coding::Brotli
            } else {
                return Decoded::Undecodable;
            };
        if count == MAX_CODINGS {
            return Decoded::Undecodable;
        }
        codings[count] = coding;
        count += 1;
    }
    let mut content = Cow::Borrowed(body);
    // Codings are listed in the order they were applied.
    for &coding in codings[..count].iter().rev() {
        match decode_one(&content, coding, cap) {
            Ok(decoded) => content = Cow::Owned(decoded),
            Err(Failure::OverCap) => return Decoded::OverCap,
            Err(Failure::Corrupt) => return Decoded::Undecodable,
        }
    }
    if content.len() > cap {
        return Decoded::OverCap;
    }
    Decoded::Bytes(content)
}

fn decode_one(input: &[u8], coding: Coding, cap: usize) -> Result<Vec<u8>, Failure> {
    match coding {
        Coding::Gzip => read_bounded(flate2::bufread::MultiGzDecoder::new(input), cap),
        // RFC 9110 says zlib format; some servers send raw deflate, which browsers accept too.
        Coding::Deflate => match read_bounded(flate2::bufread::ZlibDecoder::new(input), cap) {
            Err(Failure::Corrupt) => read_bounded(flate2::bufread::DeflateDecoder::new(input), cap),
            other => other,
        },
        Coding::Brotli => read_bounded(brotli_decompressor::Decompressor::new(input, 4096), cap),
    }
}

/// Everything `reader` yields, if that is at most `cap` bytes; the buffer's capacity never
/// exceeds `cap`.
fn read_bounded(mut reader: impl Read, cap: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    loop {
        let len = out.len();
        if len == cap {
            let mut probe = [0u8; 1];
            return match reader.read(&mut probe) {
                Ok(0) => Ok(out),
                Ok(_) => Err(Failure::OverCap),
                Err(_) => Err(Failure::Corrupt),
            };
        }
        // Doubling, from 4 KiB, clamped to the cap.
        let room = len.max(4096).min(cap - len);
        out.reserve_exact(len + room - out.len());
        out.resize(len + room, 0);
        match reader.read(&mut out[len..]) {
            Ok(n) => {
                out.truncate(len + n);
                if n == 0 {
                    return Ok(out);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => out.truncate(len),
            Err(_) => return Err(Failure::Corrupt),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const JSON: &[u8] = br#"{"id":7,"items":[{"sku":"A","qty":1}],"total":"12.50"}"#;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("zlib");
        encoder.finish().expect("zlib")
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("deflate");
        encoder.finish().expect("deflate")
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            encoder.write_all(data).expect("br");
        }
        out
    }

    #[test]
    fn gzip_deflate_and_br_are_undone() {
        for (coding, body) in [
            ("gzip", gzip(JSON)),
            ("x-gzip", gzip(JSON)),
            ("deflate", zlib(JSON)),
            ("deflate", raw_deflate(JSON)),
            ("br", brotli(JSON)),
            ("identity", JSON.to_vec()),
        ] {
            assert_eq!(
                decode(&body, Some(coding.as_bytes()), 1024),
                Decoded::Bytes(Cow::Borrowed(JSON)),
                "{coding}"
            );
        }
        assert_eq!(
            decode(JSON, None, 1024),
            Decoded::Bytes(Cow::Borrowed(JSON))
        );
    }

    #[test]
    fn stacked_codings_are_undone_in_reverse_order() {
        let body = brotli(&gzip(JSON));
        assert_eq!(
            decode(&body, Some(b"gzip, br"), 1024),
            Decoded::Bytes(Cow::Borrowed(JSON))
        );
    }

    #[test]
    fn unknown_codings_and_corrupt_data_are_undecodable() {
        assert_eq!(decode(JSON, Some(b"zstd"), 1024), Decoded::Undecodable);
        assert_eq!(decode(JSON, Some(b"gzip"), 1024), Decoded::Undecodable);
        assert_eq!(decode(JSON, Some(b"br"), 1024), Decoded::Undecodable);
        let mut cut = gzip(JSON);
        cut.truncate(cut.len() / 2);
        assert_eq!(decode(&cut, Some(b"gzip"), 1024), Decoded::Undecodable);
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_cap() {
        // 8 MiB of zeros in ~8 KiB of gzip, and in a few dozen bytes of br.
        let zeros = vec![0u8; 8 << 20];
        let cap = 64 * 1024;
        for (coding, body) in [("gzip", gzip(&zeros)), ("br", brotli(&zeros))] {
            assert!(body.len() < zeros.len() / 500, "{coding}: {}", body.len());
            assert_eq!(
                decode(&body, Some(coding.as_bytes()), cap),
                Decoded::OverCap
            );
        }
        // A body exactly at the cap decodes, into a buffer no larger than the cap.
        let exact = gzip(&zeros[..cap]);
        let decoded =
            read_bounded(flate2::bufread::MultiGzDecoder::new(&exact[..]), cap).expect("fits");
        assert_eq!(decoded.len(), cap);
        assert!(decoded.capacity() <= cap, "{}", decoded.capacity());
        // An endless reader is cut at the cap too.
        assert_eq!(read_bounded(std::io::repeat(7), cap), Err(Failure::OverCap));
    }

    #[test]
    fn a_plain_body_over_the_cap_is_over_the_cap() {
        assert_eq!(decode(JSON, None, 10), Decoded::OverCap);
    }
}
