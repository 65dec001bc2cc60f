//! HPACK (RFC 7541) for one direction of a connection: the dynamic table driven exactly as the
//! peer's encoder drives it, within the size the other peer's SETTINGS allow.
//!
//! Written here, not taken from a crate, for these reasons (checked for h2 0.4.20, loona-hpack
//! 0.4.3, httlib-hpack 0.1.3, hpack 0.3.0, nahpack 0.2.0):
//! - `h2`, whose HPACK runs in hyper, tonic and reqwest, keeps its `hpack` module private even
//!   with its `unstable` feature (which exposes only `frame`, `proto` and `Codec`); driving a
//!   whole `h2::Codec` per block would buffer whole frames and keep its read buffer alive.
//! - `loona-hpack` builds a HashMap-based Huffman decoder for every string and walks it bit by
//!   bit with a hash lookup per bit (far slower than the HTTP/1.1 framer it sits beside), and
//!   accepts size updates anywhere in a block.
//! - `httlib-hpack` has had no release since 2021 and drains its input `Vec` per field
//!   (quadratic); `hpack` has had none since 2016; `nahpack` since 2016, under the MPL.
//!
//! None decodes incrementally, so that would not have been a reason: a block is buffered whole
//! (bounded by `max_header_bytes`), which the framing needs anyway. What is written here is
//! small: integers (section 5.1), strings (5.2) with a canonical-code Huffman decoder built at
//! compile time from the code lengths of Appendix B, the static table of Appendix A and a
//! dynamic table. It is checked against the examples of Appendix C, against what the `h2`
//! crate's encoder produces (tests), and against h2's server (fuzz target `h2_differential`).
//!
//! Memory: each dynamic table entry is one allocation of its name and value; the table holds at
//! most the encoder's current size as RFC 7541 counts it (32 + name + value per entry), which
//! covers the bookkeeping too. Huffman-decoded strings go to a buffer that lives for one block.

use std::collections::VecDeque;

use super::TunnelReason;

/// The dynamic table size an encoder starts with (SETTINGS_HEADER_TABLE_SIZE's initial value).
pub const INITIAL_TABLE_SIZE: usize = 4096;

/// RFC 7541 section 4.1: the size of an entry.
pub fn entry_size(name: &[u8], value: &[u8]) -> usize {
    32 + name.len() + value.len()
}

/// Decodes the field blocks one peer's encoder produces, in order.
#[derive(Debug)]
pub struct HpackDecoder {
    table: DynamicTable,
    /// The largest table this decoder follows, whatever the SETTINGS allow.
    max_table_size: usize,
}

impl HpackDecoder {
    /// A decoder following tables of up to `max_table_size` bytes (at least the initial 4096).
    pub fn new(max_table_size: usize) -> Self {
        Self {
            table: DynamicTable::new(INITIAL_TABLE_SIZE),
            max_table_size: max_table_size.max(INITIAL_TABLE_SIZE),
        }
    }

    /// The dynamic table size the encoder set last (4096 until it sends an update).
    #[cfg(test)]
    pub fn table_size(&self) -> usize {
        self.table.max_size
    }

    /// Decodes one complete field block, handing each field's name and value to `field` in
    /// order. `allowed` is the largest table size the encoder may use now (from the decoding
    /// side's SETTINGS, see `settings`). Any error leaves the table uncertain: the caller must
    /// stop decoding the connection.
    pub fn decode(
        &mut self,
        block: &[u8],
        allowed: usize,
        field: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), TunnelReason> {
        let mut pos = 0;
        let mut fields_seen = false;
        let mut huffman = Vec::new();
        while pos < block.len() {
            let first = block[pos];
            if first & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field (section 4.2).
                if fields_seen {
                    return Err(TunnelReason::HpackMisplacedSizeUpdate);
                }
                let (size, len) = decode_int(&block[pos..], 5)?;
                self.check_table_size(size, allowed)?;
                self.table.set_max_size(size);
                pos += len;
                continue;
            }
            if !fields_seen {
                // Also catches an encoder that keeps a table larger than a limit it has
                // acknowledged, without the size update section 4.2 requires.
                self.check_table_size(self.table.max_size, allowed)?;
                fields_seen = true;
            }
            if first & 0x80 != 0 {
                let (index, len) = decode_int(&block[pos..], 7)?;
                let (name, value) = self.table.get(index)?;
                field(name, value);
                pos += len;
                continue;
            }
            // Literals: with incremental indexing (01), without indexing (0000), never indexed
            // (0001); the last two leave the table alone.
            let indexing = first & 0x40 != 0;
            let (name_index, len) = decode_int(&block[pos..], if indexing { 6 } else { 4 })?;
            pos += len;
            huffman.clear();
            let name = if name_index == 0 {
                Some(read_string(block, &mut pos, &mut huffman)?)
            } else {
                None
            };
            let value = read_string(block, &mut pos, &mut huffman)?;
            let value = value.resolve(block, &huffman);
            let entry = match name {
                Some(name) => {
                    let name = name.resolve(block, &huffman);
                    field(name, value);
                    indexing.then(|| Entry::new(name, value))
                }
                None => {
                    let (name, _) = self.table.get(name_index)?;
                    field(name, value);
                    indexing.then(|| Entry::new(name, value))
                }
            };
            if let Some(entry) = entry {
                self.table.insert(entry);
            }
        }
        if !fields_seen {
            self.check_table_size(self.table.max_size, allowed)?;
        }
        Ok(())
    }

    fn check_table_size(&self, size: usize, allowed: usize) -> Result<(), TunnelReason> {
        if size > allowed {
            Err(TunnelReason::HpackTableSizeOverSetting)
        } else if size > self.max_table_size {
            Err(TunnelReason::HpackTableSizeOverLimit)
        } else {
            Ok(())
        }
    }
}

/// A decoded string: raw bytes of the block, or Huffman-decoded bytes in the scratch buffer.
enum Str {
    Raw(usize, usize),
    Decoded(usize, usize),
}

impl Str {
    fn resolve<'a>(&self, block: &'a [u8], huffman: &'a [u8]) -> &'a [u8] {
        match *self {
            Str::Raw(start, end) => &block[start..end],
            Str::Decoded(start, end) => &huffman[start..end],
        }
    }
}

/// Reads a string literal (section 5.2) at `block[*pos..]`.
fn read_string(block: &[u8], pos: &mut usize, huffman: &mut Vec<u8>) -> Result<Str, TunnelReason> {
    let rest = &block[*pos..];
    let coded = rest.first().ok_or(TunnelReason::HpackTruncated)? & 0x80 != 0;
    let (len, prefix) = decode_int(rest, 7)?;
    let start = *pos + prefix;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= block.len())
        .ok_or(TunnelReason::HpackTruncated)?;
    *pos = end;
    if !coded {
        return Ok(Str::Raw(start, end));
    }
    let from = huffman.len();
    huffman_decode(&block[start..end], huffman)?;
    Ok(Str::Decoded(from, huffman.len()))
}

/// Reads an integer with a `prefix_bits` prefix (section 5.1); returns it and its length. At
/// most 4 continuation bytes are accepted (values up to 2^28 and then some, far beyond any
/// length or index a block can hold), so the value cannot overflow.
fn decode_int(bytes: &[u8], prefix_bits: u8) -> Result<(usize, usize), TunnelReason> {
    const MAX_LEN: usize = 5;
    let mask = u8::MAX >> (8 - prefix_bits);
    let first = *bytes.first().ok_or(TunnelReason::HpackTruncated)?;
    let mut value = usize::from(first & mask);
    if value < usize::from(mask) {
        return Ok((value, 1));
    }
    let mut shift = 0;
    for (i, &byte) in bytes[1..].iter().enumerate() {
        value += usize::from(byte & 0x7f) << shift;
        shift += 7;
        let len = i + 2;
        if byte & 0x80 == 0 {
            return Ok((value, len));
        }
        if len == MAX_LEN {
            return Err(TunnelReason::HpackInvalidEncoding);
        }
    }
    Err(TunnelReason::HpackTruncated)
}

/// One dynamic table entry: name and value in one allocation.
#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        Self {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        }
    }

    fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }

    fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }

    fn size(&self) -> usize {
        entry_size(self.name(), self.value())
    }
}

/// The dynamic table (section 2.3.2): newest entry first, evicted from the oldest.
#[derive(Debug)]
struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    fn new(max_size: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    /// Entry `index` of the combined index space (section 2.3.3): 1 to 61 static, then dynamic.
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), TunnelReason> {
        if let Some(&(name, value)) = index.checked_sub(1).and_then(|i| STATIC_TABLE.get(i)) {
            return Ok((name.as_bytes(), value.as_bytes()));
        }
        index
            .checked_sub(STATIC_TABLE.len() + 1)
            .and_then(|i| self.entries.get(i))
            .map(|entry| (entry.name(), entry.value()))
            .ok_or(TunnelReason::HpackInvalidIndex)
    }

    /// Section 4.4: evict until the entry fits; an entry larger than the table empties it.
    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        self.evict_to(self.max_size.saturating_sub(size));
        if size <= self.max_size {
            self.size += size;
            self.entries.push_front(entry);
        }
    }

    /// Section 4.3.
    fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            match self.entries.pop_back() {
                Some(evicted) => self.size -= evicted.size(),
                None => break,
            }
        }
        if self.entries.is_empty() {
            self.entries = VecDeque::new();
        }
    }
}

/// Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Appendix B: the length in bits of each symbol's code (256 is EOS). The code is canonical
/// (codes of one length are consecutive, in symbol order, after the shorter ones), so the
/// lengths are all that is needed to decode it.
const HUFFMAN_CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// The longest code (EOS).
const MAX_CODE_LEN: usize = 30;

/// The canonical code by length: where each length's codes start, how many there are, and
/// where its symbols start in [`HuffmanTable::symbols`].
struct HuffmanTable {
    first_code: [u32; MAX_CODE_LEN + 1],
    count: [u32; MAX_CODE_LEN + 1],
    offset: [u16; MAX_CODE_LEN + 1],
    /// Symbols ordered by (code length, symbol).
    symbols: [u16; 257],
}

const HUFFMAN: HuffmanTable = build_huffman_table();

const fn build_huffman_table() -> HuffmanTable {
    let mut table = HuffmanTable {
        first_code: [0; MAX_CODE_LEN + 1],
        count: [0; MAX_CODE_LEN + 1],
        offset: [0; MAX_CODE_LEN + 1],
        symbols: [0; 257],
    };
    let mut symbol = 0;
    while symbol < 257 {
        table.count[HUFFMAN_CODE_LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    let mut code = 0u32;
    let mut placed = 0u16;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        table.first_code[len] = code;
        table.offset[len] = placed;
        let mut symbol = 0;
        while symbol < 257 {
            if HUFFMAN_CODE_LENGTHS[symbol] as usize == len {
                table.symbols[placed as usize] = symbol as u16;
                placed += 1;
            }
            symbol += 1;
        }
        code = (code + table.count[len]) << 1;
        len += 1;
    }
    table
}

/// The shortest code (RFC 7541 Appendix B: `0`, `1`, `2`, `a`, `c`, `e`, ...).
const MIN_CODE_LEN: usize = 5;

/// Every code of at most 8 bits, by the byte that starts with it: its symbol and length (0 for a
/// byte that starts a longer code).
const SHORT_CODES: [(u8, u8); 256] = build_short_codes();

const fn build_short_codes() -> [(u8, u8); 256] {
    let mut table = [(0u8, 0u8); 256];
    let mut len = MIN_CODE_LEN;
    while len <= 8 {
        let mut rank = 0;
        while rank < HUFFMAN.count[len] {
            let symbol = HUFFMAN.symbols[HUFFMAN.offset[len] as usize + rank as usize] as u8;
            let first = ((HUFFMAN.first_code[len] + rank) << (8 - len)) as usize;
            let mut byte = first;
            while byte < first + (1 << (8 - len)) {
                table[byte] = (symbol, len as u8);
                byte += 1;
            }
            rank += 1;
        }
        len += 1;
    }
    table
}

/// Decodes a Huffman-coded string (section 5.2), appending to `out`. EOS in the string, and
/// padding longer than 7 bits or not all ones, are errors.
///
/// The input goes through a 64-bit window that always holds a whole code (at most 30 bits)
/// while input remains. A code of up to 8 bits (the letters, digits and common punctuation) is
/// read from [`SHORT_CODES`] with the window's next byte; a longer one is found by trying its
/// length from 9 bits up against the canonical code's ranges.
fn huffman_decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelReason> {
    out.reserve(input.len() * 8 / MIN_CODE_LEN);
    let mut bytes = input.iter();
    // The `pending` lowest bits of `window` are the input not decoded yet.
    let mut window = 0u64;
    let mut pending = 0usize;
    loop {
        while pending <= 56 {
            let Some(&byte) = bytes.next() else { break };
            window = (window << 8) | u64::from(byte);
            pending += 8;
        }
        let Some((symbol, len)) = next_symbol(window, pending)? else {
            return Ok(());
        };
        out.push(symbol);
        pending -= len;
        window &= (1 << pending) - 1;
    }
}

/// The symbol whose code starts the `pending` lowest bits of `window`, and the code's length;
/// `None` at the end of the input, when what is left is valid padding.
fn next_symbol(window: u64, pending: usize) -> Result<Option<(u8, usize)>, TunnelReason> {
    let mut len = MIN_CODE_LEN;
    if pending >= 8 {
        let (symbol, short_len) = SHORT_CODES[((window >> (pending - 8)) & 0xff) as usize];
        if short_len != 0 {
            return Ok(Some((symbol, usize::from(short_len))));
        }
        len = 9;
    }
    loop {
        if len > pending {
            // The input ends within a code: what is left must be padding, the most significant
            // bits of EOS (all ones), at most 7 of them.
            let rest = window & ((1 << pending) - 1);
            return if pending <= 7 && rest == (1 << pending) - 1 {
                Ok(None)
            } else {
                Err(TunnelReason::HpackInvalidHuffman)
            };
        }
        let code = (window >> (pending - len)) as u32;
        let index = code.wrapping_sub(HUFFMAN.first_code[len]);
        if index < HUFFMAN.count[len] {
            let symbol = HUFFMAN.symbols[usize::from(HUFFMAN.offset[len]) + index as usize];
            // EOS (256) is the only symbol that is not a byte.
            let symbol = u8::try_from(symbol).map_err(|_| TunnelReason::HpackInvalidHuffman)?;
            return Ok(Some((symbol, len)));
        }
        if len == MAX_CODE_LEN {
            return Err(TunnelReason::HpackInvalidHuffman);
        }
        len += 1;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Bytes written as hex digits, blanks ignored (as the RFC prints them).
    pub(in crate::http::h2) fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16))
            .collect::<Result<_, _>>()
            .expect("hex")
    }

    fn decode(
        decoder: &mut HpackDecoder,
        block: &[u8],
    ) -> Result<Vec<(String, String)>, TunnelReason> {
        let mut fields = Vec::new();
        decoder.decode(block, 4096, &mut |name, value| {
            fields.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })?;
        Ok(fields)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn integers_match_rfc7541_c1() {
        assert_eq!(decode_int(&[0x0a], 5), Ok((10, 1)));
        assert_eq!(decode_int(&[0x1f, 0x9a, 0x0a], 5), Ok((1337, 3)));
        assert_eq!(decode_int(&[0x2a], 8), Ok((42, 1)));
        assert_eq!(
            decode_int(&[0x1f, 0x80], 5),
            Err(TunnelReason::HpackTruncated)
        );
        assert_eq!(
            decode_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x01], 5),
            Err(TunnelReason::HpackInvalidEncoding)
        );
        assert!(decode_int(&[0x1f, 0xff, 0xff, 0xff, 0x7f], 5).is_ok());
    }

    #[test]
    fn huffman_code_is_the_one_of_appendix_b() {
        // Spot checks of Appendix B, derived from the lengths alone.
        let code_of = |symbol: u16| {
            let len = HUFFMAN_CODE_LENGTHS[usize::from(symbol)] as usize;
            let rank = HUFFMAN.symbols[usize::from(HUFFMAN.offset[len])..]
                .iter()
                .position(|&s| s == symbol)
                .expect("placed");
            (HUFFMAN.first_code[len] + rank as u32, len)
        };
        assert_eq!(code_of(b'0'.into()), (0x0, 5));
        assert_eq!(code_of(b' '.into()), (0x14, 6));
        assert_eq!(code_of(b'a'.into()), (0x3, 5));
        assert_eq!(code_of(0), (0x1ff8, 13));
        assert_eq!(code_of(255), (0x3ffffee, 26));
        assert_eq!(code_of(256), (0x3fffffff, 30));
    }

    /// Every byte, alone and in one long string (which crosses the decoder's 64-bit window at
    /// every alignment), encoded with the code of Appendix B and then decoded.
    #[test]
    fn huffman_decodes_every_byte_at_every_alignment() {
        let encode = |text: &[u8]| {
            let (mut bits, mut len, mut out) = (0u64, 0usize, Vec::new());
            for &byte in text {
                let symbol = u16::from(byte);
                let code_len = HUFFMAN_CODE_LENGTHS[usize::from(symbol)] as usize;
                let rank = HUFFMAN.symbols[usize::from(HUFFMAN.offset[code_len])..]
                    .iter()
                    .position(|&s| s == symbol)
                    .expect("placed");
                bits = (bits << code_len) | u64::from(HUFFMAN.first_code[code_len] + rank as u32);
                len += code_len;
                while len >= 8 {
                    out.push((bits >> (len - 8)) as u8);
                    len -= 8;
                    bits &= (1 << len) - 1;
                }
            }
            if len > 0 {
                // Padding: the most significant bits of EOS.
                out.push(((bits << (8 - len)) | ((1 << (8 - len)) - 1)) as u8);
            }
            out
        };
        for byte in 0..=u8::MAX {
            let mut out = Vec::new();
            huffman_decode(&encode(&[byte]), &mut out).expect("one byte");
            assert_eq!(out, [byte]);
        }
        let text: Vec<u8> = (0..4)
            .flat_map(|_| 0..=u8::MAX)
            .chain(*b"www.example.com")
            .collect();
        for start in 0..40 {
            let mut out = b"kept".to_vec();
            huffman_decode(&encode(&text[start..]), &mut out).expect("long string");
            assert_eq!(&out[..4], b"kept");
            assert_eq!(&out[4..], &text[start..]);
        }
    }

    #[test]
    fn huffman_rejects_eos_and_bad_padding() {
        let mut out = Vec::new();
        assert_eq!(
            huffman_decode(&[0xff, 0xff, 0xff, 0xfc], &mut out),
            Err(TunnelReason::HpackInvalidHuffman),
            "EOS"
        );
        // 'a' (00011) then padding 000: not all ones.
        assert_eq!(
            huffman_decode(&[0b0001_1000], &mut out),
            Err(TunnelReason::HpackInvalidHuffman)
        );
        // A whole byte of ones is more than 7 bits of padding.
        assert_eq!(
            huffman_decode(&[0b0001_1111, 0xff], &mut out),
            Err(TunnelReason::HpackInvalidHuffman)
        );
        out.clear();
        huffman_decode(&[0b0001_1111], &mut out).expect("'a' and padding");
        assert_eq!(out, b"a");
    }

    /// RFC 7541 C.3 (without Huffman) and C.4 (with): three requests on one connection, with
    /// the dynamic table after each checked through the indexes the next one uses.
    #[test]
    fn rfc7541_c3_and_c4_requests() {
        let first = pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]);
        let second = pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]);
        let third = pairs(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]);
        let c3 = [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ];
        let c4 = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        for blocks in [c3, c4] {
            let mut decoder = HpackDecoder::new(4096);
            for (block, expected) in blocks.iter().zip([&first, &second, &third]) {
                assert_eq!(
                    &decode(&mut decoder, &hex(block)).expect("decodes"),
                    expected
                );
            }
            // C.3.3 / C.4.3: three entries, 164 bytes.
            assert_eq!(decoder.table.entries.len(), 3);
            assert_eq!(decoder.table.size, 164);
        }
    }

    /// RFC 7541 C.5: three responses encoded without Huffman, with a 256-byte table.
    pub(in crate::http::h2) const RFC7541_C5: [&str; 3] = [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ];

    /// RFC 7541 C.6: the same responses with Huffman coding.
    pub(in crate::http::h2) const RFC7541_C6: [&str; 3] = [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];

    /// The fields of the three responses of C.5 and C.6, `:status` first.
    pub(in crate::http::h2) fn rfc7541_responses() -> [Vec<(String, String)>; 3] {
        let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
        let date2 = "Mon, 21 Oct 2013 20:13:22 GMT";
        let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        let location = "https://www.example.com";
        [
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", date1),
                ("location", location),
            ]),
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", date1),
                ("location", location),
            ]),
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", date2),
                ("location", location),
                ("content-encoding", "gzip"),
                ("set-cookie", cookie),
            ]),
        ]
    }

    /// RFC 7541 C.5 (without Huffman) and C.6 (with): responses with a 256-byte table, so that
    /// entries are evicted.
    #[test]
    fn rfc7541_c5_and_c6_responses_evict() {
        let expected = rfc7541_responses();
        for blocks in [RFC7541_C5, RFC7541_C6] {
            let mut decoder = HpackDecoder::new(4096);
            decoder.table.set_max_size(256);
            for (block, expected) in blocks.iter().zip(&expected) {
                let mut fields = Vec::new();
                decoder
                    .decode(&hex(block), 256, &mut |n, v| {
                        fields.push((
                            String::from_utf8_lossy(n).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        ))
                    })
                    .expect("decodes");
                assert_eq!(&fields, expected);
            }
            // C.5.3 / C.6.3: three entries, 215 bytes.
            assert_eq!(decoder.table.entries.len(), 3);
            assert_eq!(decoder.table.size, 215);
        }
    }

    #[test]
    fn size_updates_are_checked_against_settings_limit_and_place() {
        let mut decoder = HpackDecoder::new(8192);
        // Update to 0 then 4096, then an indexed field: fine under 4096.
        assert!(decode(&mut decoder, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]).is_ok());
        assert_eq!(decoder.table_size(), 4096);
        // 8192 is above what the settings allow (4096).
        assert_eq!(
            decode(&mut decoder, &[0x3f, 0xe1, 0x3f]),
            Err(TunnelReason::HpackTableSizeOverSetting)
        );
        let mut decoder = HpackDecoder::new(4096);
        let mut ignore = |_: &[u8], _: &[u8]| {};
        assert_eq!(
            decoder.decode(&[0x3f, 0xe1, 0x3f], 1 << 20, &mut ignore),
            Err(TunnelReason::HpackTableSizeOverLimit)
        );
        assert_eq!(
            decoder.decode(&[0x82, 0x20], 4096, &mut ignore),
            Err(TunnelReason::HpackMisplacedSizeUpdate)
        );
        // The settings went down to 100 and were acknowledged, but the encoder still uses 4096.
        let mut decoder = HpackDecoder::new(4096);
        assert_eq!(
            decoder.decode(&[0x82], 100, &mut ignore),
            Err(TunnelReason::HpackTableSizeOverSetting)
        );
        assert!(decoder
            .decode(&[0x3f, 0x45, 0x82], 100, &mut ignore)
            .is_ok());
    }

    #[test]
    fn bad_indexes_and_truncation_are_errors() {
        let mut decoder = HpackDecoder::new(4096);
        let mut ignore = |_: &[u8], _: &[u8]| {};
        assert_eq!(
            decoder.decode(&[0x80], 4096, &mut ignore),
            Err(TunnelReason::HpackInvalidIndex)
        );
        assert_eq!(
            decoder.decode(&[0xbe], 4096, &mut ignore),
            Err(TunnelReason::HpackInvalidIndex)
        );
        assert_eq!(
            decoder.decode(&[0x40, 0x03, b'a'], 4096, &mut ignore),
            Err(TunnelReason::HpackTruncated)
        );
        assert_eq!(
            decoder.decode(&[0x04], 4096, &mut ignore),
            Err(TunnelReason::HpackTruncated)
        );
    }

    #[test]
    fn entries_larger_than_the_table_empty_it() {
        let mut table = DynamicTable::new(64);
        table.insert(Entry::new(b"a", b"b"));
        assert_eq!(table.size, 34);
        table.insert(Entry::new(b"long-name", b"and a value that does not fit"));
        assert_eq!((table.size, table.entries.len()), (0, 0));
    }
}
