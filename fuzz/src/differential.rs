//! The daemon's incremental framer against the whole-buffer [`reference`](crate::reference).
//!
//! Every request the framer completes (head to End) must be one the reference finds, with the
//! same boundaries, request line, fields, body length and connection persistence; and where the
//! input ends, both must agree on how: cleanly, refused (the framer tunnels), or inside a body
//! that is valid so far (the framer waits). Inside an unfinished head the framer may give up
//! before the reference can tell (it checks each line as it arrives), so only that is left open.

use mirror_daemon::http::FramingLimits;

use crate::{
    events::{completed, Event},
    reference::{self, End},
};

/// Compares the framing `events` of `input` with the reference's.
pub fn compare(input: &[u8], events: &[Event], limits: FramingLimits) {
    let expected = reference::parse(input, limits);
    let done = completed(events);
    let tunnel = matches!(events.last(), Some(Event::Tunnel(_)));
    let show = || {
        format!(
            "input {:?}\nlimits {limits:?}\nframer: {:?}\nreference: {} requests, then {:?}",
            String::from_utf8_lossy(input),
            events
                .iter()
                .map(|e| match e {
                    Event::Head(h) => format!("Head({:?})", String::from_utf8_lossy(&h.raw)),
                    Event::Body(b) => format!("Body({:?})", String::from_utf8_lossy(b)),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            expected.requests.len(),
            expected.end
        )
    };
    for (i, (ours, theirs)) in done.iter().zip(&expected.requests).enumerate() {
        let head = ours.head;
        assert_eq!(
            ours.start,
            theirs.head.start,
            "request {i}: start\n{}",
            show()
        );
        assert_eq!(
            ours.start + head.raw.len(),
            theirs.head.end,
            "request {i}: end of head\n{}",
            show()
        );
        assert_eq!(ours.body, theirs.body, "request {i}: body\n{}", show());
        assert_eq!(head.method.as_bytes(), theirs.method, "request {i}: method");
        assert_eq!(head.target.as_bytes(), theirs.target, "request {i}: target");
        assert_eq!(head.version, theirs.version, "request {i}: version");
        assert_eq!(head.body, theirs.kind, "request {i}: body kind\n{}", show());
        assert_eq!(
            head.keeps_connection_open,
            theirs.keeps_connection_open,
            "request {i}: connection persistence\n{}",
            show()
        );
        let fields: Vec<(&[u8], &[u8])> = head
            .headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_slice()))
            .collect();
        let their_fields: Vec<(&[u8], &[u8])> = theirs
            .fields
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        assert_eq!(fields, their_fields, "request {i}: fields\n{}", show());
    }
    let n = expected.requests.len();
    assert_eq!(
        done.len(),
        n,
        "the framer completed {} requests, the reference {n}\n{}",
        done.len(),
        show()
    );
    match &expected.end {
        End::Clean => assert!(!tunnel, "the framer gave up on a valid stream\n{}", show()),
        End::Reject(_) => assert!(
            tunnel,
            "the framer accepts what the reference refuses\n{}",
            show()
        ),
        End::IncompleteHead => {}
        End::IncompleteBody(partial) => {
            assert!(
                !tunnel,
                "the framer gave up inside a body that is valid so far\n{}",
                show()
            );
            let Some(Event::Head(head)) = events.iter().rev().find(|e| matches!(e, Event::Head(_)))
            else {
                panic!("no head for the unfinished body\n{}", show());
            };
            assert_eq!(head.body, partial.kind, "unfinished body kind\n{}", show());
        }
    }
}
