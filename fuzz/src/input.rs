//! The byte layout of the unstructured targets' inputs (`framer_chunks`, `shadow_response`).
//!
//! ```text
//! byte 0        bits 0-3: k, the number of schedule bytes; bit 4: small limits follow;
//!               bits 5-7: target-specific flags
//! [2 bytes]     only with bit 4: max_header_bytes = 128 + 4 * b[0], max_headers = 1 + b[1] % 16
//! k bytes       chunk lengths, used in turn (0 = an empty chunk)
//! the rest      the stream
//! ```
//!
//! A seed is made by prefixing a stream with `0x00` (one chunk, default limits).

use mirror_daemon::http::FramingLimits;

/// An input taken apart.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// Limits within what the config accepts (`mirror.framing`).
    pub limits: FramingLimits,
    /// Bits 5 to 7 of byte 0, for the target to use.
    pub flags: u8,
    pub schedule: &'a [u8],
    pub stream: &'a [u8],
}

impl<'a> Layout<'a> {
    pub fn parse(data: &'a [u8]) -> Self {
        let Some((&first, mut rest)) = data.split_first() else {
            return Self {
                limits: FramingLimits::default(),
                flags: 0,
                schedule: &[],
                stream: &[],
            };
        };
        let mut limits = FramingLimits::default();
        if first & 0x10 != 0 && rest.len() >= 2 {
            limits = FramingLimits {
                max_header_bytes: 128 + 4 * usize::from(rest[0]),
                max_headers: 1 + usize::from(rest[1] % 16),
            };
            rest = &rest[2..];
        }
        let k = usize::from(first & 0x0f).min(rest.len());
        let (schedule, stream) = rest.split_at(k);
        Self {
            limits,
            flags: first & 0xe0,
            schedule,
            stream,
        }
    }
}

/// Cuts `stream` into chunks whose lengths are taken from `schedule` in turn (0 is an empty
/// chunk); without a schedule, or once a whole round of it made no progress, the rest is one
/// chunk.
pub fn chunks<'a>(stream: &'a [u8], schedule: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    if schedule.iter().all(|&len| len == 0) {
        out.extend(schedule.iter().map(|_| &rest[..0]));
        out.push(rest);
        return out;
    }
    for &len in schedule.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(usize::from(len).min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_stream_in_order() {
        let stream = b"0123456789";
        for schedule in [&[][..], &[0], &[0, 0], &[3], &[1, 0, 2], &[255]] {
            let chunks = chunks(stream, schedule);
            assert_eq!(chunks.concat(), stream, "{schedule:?}");
        }
        assert_eq!(
            chunks(stream, &[4, 0]),
            [&b"0123"[..], b"", b"4567", b"", b"89"]
        );
    }

    #[test]
    fn layout_reads_flags_limits_and_schedule() {
        let layout = Layout::parse(b"\x32\x00\x05\x01\x02GET");
        assert_eq!(layout.limits.max_header_bytes, 128);
        assert_eq!(layout.limits.max_headers, 6);
        assert_eq!(layout.flags, 0x20);
        assert_eq!(layout.schedule, [1, 2]);
        assert_eq!(layout.stream, b"GET");
        let seed = Layout::parse(b"\x00GET");
        assert_eq!(seed.limits, FramingLimits::default());
        assert_eq!((seed.schedule, seed.stream), (&[][..], &b"GET"[..]));
    }
}
