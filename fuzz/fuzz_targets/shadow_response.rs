//! The shadow response reader (`shadow/response.rs` with `shadow/chunked.rs`), which parses
//! whatever a remote shadow target sends, fed arbitrary bytes split arbitrarily.
//!
//! Input: see `mirror_fuzz::input`; flag 0x20: the answer to a HEAD request; flags 0x40 and 0x80
//! together: after the stream, its second half repeats until 320 KiB have been read (endless
//! heads, bodies, extensions, trailers). Checks: no panic; the reader finishes without waiting (its input never
//! blocks); memory stays bounded (at most 256 KiB allocated at once, however long the stream);
//! the outcome does not depend on how the bytes were split, save the exact point where a head
//! becomes too large.
//!
//! The reader is private to the daemon's `shadow` module, so its two source files are compiled
//! here as they are, under a module of the same shape.
#![no_main]

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::{
    input::Layout,
    memory::{self, Counting},
};
use tokio::io::{AsyncRead, ReadBuf};

#[path = "../../mirror-daemon/src/shadow"]
mod shadow {
    pub use mirror_daemon::shadow::error;

    mod chunked;
    mod response;

    /// `read_response`'s outcome as (status, reusable).
    pub async fn read<R: tokio::io::AsyncRead + Unpin>(
        io: &mut R,
        is_head: bool,
    ) -> Result<(u16, bool), error::Failure> {
        response::read_response(io, is_head)
            .await
            .map(|r| (r.status, r.reusable))
    }
}

use shadow::error::{Failure, ProtocolError};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Most heap the reader may hold at once.
const MEMORY_BOUND: usize = 256 * 1024;
/// How much a repeating stream delivers before it ends: past the memory bound, so a reader that
/// kept the stream would fail, and past the reader's own limits (64 KiB heads and trailers). Its
/// peak is 128 KiB (a 64 KiB head in a buffer grown by doubling); 320 KiB keeps the check while
/// costing the fuzzer less than 512 KiB did.
const REPEAT_UNTIL: usize = 320 * 1024;
/// The flag bits that make a stream repeat: both, so that a quarter of the inputs pay for a
/// long stream and the rest run at full speed.
const REPEAT: u8 = 0x40 | 0x80;

/// A peer that sends `stream` in reads of the scheduled sizes, then closes.
struct Peer<'a> {
    stream: &'a [u8],
    schedule: &'a [u8],
    /// Where the stream starts over once it is done (repeating streams only).
    repeat_from: Option<usize>,
    sent: usize,
    turn: usize,
}

impl Peer<'_> {
    /// How long the stream is, repeats included.
    fn len(&self) -> usize {
        match self.repeat_from {
            Some(from) if from < self.stream.len() => REPEAT_UNTIL.max(self.stream.len()),
            _ => self.stream.len(),
        }
    }

    /// The bytes from `at` on that lie in one piece: the rest of the stream, or of the
    /// repeated part's current round.
    fn run(&self, at: usize) -> &[u8] {
        if at < self.stream.len() {
            return &self.stream[at..];
        }
        let from = self.repeat_from.expect("read past the end");
        let period = &self.stream[from..];
        &period[(at - self.stream.len()) % period.len()..]
    }
}

impl AsyncRead for Peer<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let peer = &mut *self;
        // A zero-length read would mean EOF: schedule entries of 0 send one byte. Repeating
        // streams are long, so their reads are 256 times larger and at least 256 bytes (the
        // reader parses a head anew after each read: trickling a 64 KiB head byte by byte
        // costs it half a second, reported separately, and would stall the fuzzer here).
        let wanted = match (peer.schedule, peer.repeat_from) {
            ([], _) => usize::MAX,
            (schedule, None) => usize::from(schedule[peer.turn % schedule.len()]).max(1),
            (schedule, Some(_)) => 256 * usize::from(schedule[peer.turn % schedule.len()]).max(1),
        };
        peer.turn += 1;
        let len = wanted.min(peer.len() - peer.sent).min(buf.remaining());
        // Copied a run at a time: a byte at a time, a 512 KiB stream took milliseconds.
        let end = peer.sent + len;
        while peer.sent < end {
            let run = peer.run(peer.sent);
            let take = run.len().min(end - peer.sent);
            buf.put_slice(&run[..take]);
            peer.sent += take;
        }
        Poll::Ready(Ok(()))
    }
}

/// Reads one response from `stream` as sent per `schedule`, checking the memory bound.
fn read(layout: &Layout<'_>, schedule: &[u8]) -> Result<(u16, bool), Failure> {
    let mut peer = Peer {
        stream: layout.stream,
        schedule,
        repeat_from: (layout.flags & REPEAT == REPEAT).then_some(layout.stream.len() / 2),
        sent: 0,
        turn: 0,
    };
    let base = memory::reset_peak();
    let poll = {
        let future = pin!(shadow::read(&mut peer, layout.flags & 0x20 != 0));
        future.poll(&mut Context::from_waker(Waker::noop()))
    };
    let Poll::Ready(result) = poll else {
        panic!("the reader waited though its input never blocks");
    };
    let used = memory::peak().saturating_sub(base);
    assert!(
        used <= MEMORY_BOUND,
        "the reader held {used} bytes at once after {} bytes",
        peer.sent
    );
    result
}

fn head_too_large(result: &Result<(u16, bool), Failure>) -> bool {
    matches!(
        result,
        Err(Failure::Protocol(ProtocolError::HeadTooLarge(_)))
    )
}

fuzz_target!(|data: &[u8]| {
    let layout = Layout::parse(data);
    let whole = read(&layout, &[]);
    let split = read(&layout, layout.schedule);
    if head_too_large(&whole) || head_too_large(&split) {
        return;
    }
    match (&whole, &split) {
        (Ok((a, _)), Ok((b, _))) => assert_eq!(a, b, "status depends on the split"),
        (Err(a), Err(b)) => assert_eq!(
            format!("{a:?}"),
            format!("{b:?}"),
            "the error depends on the split"
        ),
        _ => panic!("the outcome depends on the split: whole {whole:?}, split {split:?}"),
    }
});
