//! The daemon's response framer against the whole-buffer
//! [`response_reference`](crate::response_reference).
//!
//! Every answer the framer completes (Head to End) must be one the reference finds, with the
//! same place in the stream, interim heads, status line, fields, body kind, body bytes on the
//! wire, payload and reuse; and where the input ends, both must agree on how: cleanly, switched
//! to another protocol, refused (the framer gives up), or inside a body that is valid so far
//! (the framer waits). Inside an unfinished head the framer may give up before the reference can
//! tell (it checks each line as it arrives), so only that is left open.

use mirror_daemon::http::response::{ResponseBody, ResponseGiveUp};

use crate::{
    answers::{completed, Event, Open, Setup},
    response_reference::{self, Body, End},
};

fn same_kind(ours: ResponseBody, theirs: Body) -> bool {
    matches!(
        (ours, theirs),
        (ResponseBody::None, Body::None)
            | (ResponseBody::Chunked, Body::Chunked)
            | (ResponseBody::UntilClose, Body::UntilClose)
    ) || matches!((ours, theirs), (ResponseBody::ContentLength(a), Body::Length(b)) if a == b)
}

/// Compares the framing `events` of `input` under `setup` with the reference's.
pub fn compare(input: &[u8], setup: &Setup, events: &[Event]) {
    let expected = response_reference::parse(
        input,
        &setup.requests,
        setup.opaque,
        setup.eof,
        setup.limits,
    );
    let (done, open) = completed(events);
    let gave_up = match events.last() {
        Some(Event::GiveUp(reason)) => Some(*reason),
        _ => None,
    };
    let show = || {
        format!(
            "input {:?}\nsetup {setup:?}\nframer: {:?}\nreference: {} answers, then {:?}",
            String::from_utf8_lossy(input),
            events
                .iter()
                .map(|e| match e {
                    Event::Interim(h) => format!("Interim({:?})", String::from_utf8_lossy(&h.raw)),
                    Event::Head(h) => format!("Head({:?})", String::from_utf8_lossy(&h.raw)),
                    Event::Body(b) => format!("Body({:?})", String::from_utf8_lossy(b)),
                    Event::Chunking(b) => format!("Chunking({:?})", String::from_utf8_lossy(b)),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            expected.answers.len(),
            expected.end
        )
    };
    for (i, (ours, theirs)) in done.iter().zip(&expected.answers).enumerate() {
        let head = ours.head;
        let interims: Vec<(u16, usize)> = ours
            .interims
            .iter()
            .map(|h| (h.status, h.raw.len()))
            .collect();
        let their_interims: Vec<(u16, usize)> = theirs
            .interims
            .iter()
            .map(|h| (h.status, h.range.len()))
            .collect();
        assert_eq!(
            interims,
            their_interims,
            "answer {i}: interim heads\n{}",
            show()
        );
        assert_eq!(
            ours.start,
            theirs.head.range.start,
            "answer {i}: start\n{}",
            show()
        );
        assert_eq!(
            ours.start + head.raw.len(),
            theirs.head.range.end,
            "answer {i}: end of head\n{}",
            show()
        );
        assert_eq!(head.status, theirs.head.status, "answer {i}: status");
        assert_eq!(head.version, theirs.head.version, "answer {i}: version");
        assert_eq!(head.reason, theirs.head.reason, "answer {i}: reason");
        assert_eq!(
            head.fields,
            theirs.head.fields,
            "answer {i}: fields\n{}",
            show()
        );
        assert!(
            same_kind(head.body, theirs.body),
            "answer {i}: body kind {:?} vs {:?}\n{}",
            head.body,
            theirs.body,
            show()
        );
        assert_eq!(
            ours.wire,
            theirs.wire,
            "answer {i}: body on the wire\n{}",
            show()
        );
        assert_eq!(
            ours.payload,
            theirs.payload,
            "answer {i}: payload\n{}",
            show()
        );
        assert_eq!(
            ours.reusable,
            theirs.reusable,
            "answer {i}: reuse\n{}",
            show()
        );
    }
    let n = expected.answers.len();
    assert_eq!(
        done.len(),
        n,
        "the framer completed {} answers, the reference {n}\n{}",
        done.len(),
        show()
    );
    match &expected.end {
        End::Clean => assert_eq!(
            gave_up,
            None,
            "the framer gave up on a valid stream\n{}",
            show()
        ),
        End::Switched => {
            let switch = match expected.answers.last().map(|a| a.head.status) {
                Some(101) => ResponseGiveUp::Upgrade,
                _ => ResponseGiveUp::ConnectTunnel,
            };
            assert_eq!(gave_up, Some(switch), "the switch\n{}", show());
        }
        End::Reject(_) => assert!(
            gave_up.is_some(),
            "the framer accepts what the reference refuses\n{}",
            show()
        ),
        End::IncompleteHead => {}
        End::IncompleteBody(partial) => {
            assert_eq!(
                gave_up,
                None,
                "the framer gave up inside a body that is valid so far\n{}",
                show()
            );
            let Some(Open {
                head: Some(head), ..
            }) = open
            else {
                panic!("no head for the unfinished body\n{}", show());
            };
            assert_eq!(
                head.status, partial.head.status,
                "unfinished answer's status"
            );
            assert!(
                same_kind(head.body, partial.body),
                "unfinished body kind\n{}",
                show()
            );
        }
    }
}
