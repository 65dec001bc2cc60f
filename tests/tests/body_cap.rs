//! Requests with bodies over the target's `max_body_bytes` go to the primary intact and are not
//! mirrored: a Content-Length upload is skipped before its copy starts, a chunked one is cut off
//! once it passes the cap, and the shadow never receives a complete copy of either.

use std::time::Duration;

use anyhow::{ensure, Result};
use mirror_tests::environment::require_daemon;
use mirror_tests::node::Family;
use mirror_tests::recording::RecordedRequest;
use mirror_tests::scenario::Mirroring;
use mirror_tests::tcp::random_bytes;
use mirror_tests::wire::fnv1a;
use mirror_tests::{wait, Behaviour, Client, Request};

const HOST: &str = "uploads.prod:8080";
const CAP: u64 = 1 << 20;

/// Checks that the primary got `request`'s body intact (length and digest).
fn primary_got_intact(originals: &[RecordedRequest], request: &Request) -> Result<()> {
    let original = originals
        .iter()
        .find(|original| original.target() == request.target)
        .ok_or_else(|| anyhow::anyhow!("the primary never got {}", request.target))?;
    ensure!(
        original.complete
            && original.body.data.len() == request.payload().len()
            && fnv1a(&original.body.data) == fnv1a(request.payload())
            && original.body.raw == request.body_bytes(),
        "{}: the primary got {} bytes (fnv1a {:016x}), the client sent {} (fnv1a {:016x})",
        request.target,
        original.body.data.len(),
        fnv1a(&original.body.data),
        request.payload().len(),
        fnv1a(request.payload())
    );
    Ok(())
}

#[test]
fn uploads_over_the_cap_reach_the_primary_intact_and_are_never_mirrored() -> Result<()> {
    let Some(binary) =
        require_daemon("uploads_over_the_cap_reach_the_primary_intact_and_are_never_mirrored")
    else {
        return Ok(());
    };
    let config = Mirroring::config(Mirroring::target().max_body_bytes(CAP));
    let setup = Mirroring::start(&binary, Behaviour::Normal, &config)?;
    let shadow = setup.shadow.recording();
    let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
    let before = setup.counters()?;

    // 20 MiB with Content-Length: over the cap before the first body byte.
    let big = Request::post(HOST, "/upload/content-length", &random_bytes(20 << 20)?);
    client.exchange_checked(&big)?;
    // A small request after it on the same connection is copied: the connection is still framed,
    // and once its copy arrived, any copy of the upload would have too.
    client.exchange_checked(&Request::post(HOST, "/after/content-length", b"small"))?;
    shadow.wait_for(1, Duration::from_secs(5))?;
    let delta = setup.counters()?.since(&before);
    assert_eq!(delta.copies("body_over_cap"), 1, "{delta}");
    assert_eq!(delta.copies("mirrored"), 1, "{delta}");

    // 3 MiB chunked: the copy starts, then is cut off once it passes the cap.
    let payload = random_bytes(3 << 20)?;
    let chunks: Vec<(&[u8], &str)> = payload.chunks(64 << 10).map(|chunk| (chunk, "")).collect();
    let chunked = Request::new("POST", "/upload/chunked")
        .header("Host", HOST)
        .chunked(&chunks, &[("X-Upload-Done", "yes")]);
    client.exchange_checked(&chunked)?;
    client.exchange_checked(&Request::post(HOST, "/after/chunked", b"small"))?;
    shadow.wait_for(2, Duration::from_secs(5))?;

    // The copy that was cut off is counted by the sender as `aborted`, never as a response.
    let delta = wait::until("the chunked copy counted", Duration::from_secs(5), || {
        let delta = setup.counters()?.since(&before);
        Ok(
            if delta.copies("body_over_cap") >= 2 && delta.shadow_errors("aborted") >= 1 {
                Ok(delta)
            } else {
                Err(delta.to_string())
            },
        )
    })?;
    eprintln!("counters: {delta}");
    assert_eq!(delta.copies("body_over_cap"), 2, "{delta}");
    assert_eq!(delta.copies("mirrored"), 2, "{delta}");
    assert_eq!(
        delta.copies.iter().sum::<u64>(),
        4,
        "one outcome per request; {delta}"
    );
    assert_eq!(delta.shadow_errors("aborted"), 1, "{delta}");
    assert_eq!(
        delta.shadow_2xx, 2,
        "only the two small copies were answered; {delta}"
    );

    let originals = setup.primary.recording().requests();
    primary_got_intact(&originals, &big)?;
    primary_got_intact(&originals, &chunked)?;

    let copies: Vec<String> = shadow
        .requests()
        .iter()
        .map(|r| r.target().to_owned())
        .collect();
    assert_eq!(
        copies,
        ["/after/content-length", "/after/chunked"],
        "complete copies"
    );
    // What the shadow saw of the chunked upload, if anything, stopped short: never more than the
    // cap plus one read's worth, and never its last chunk.
    for partial in shadow.incomplete() {
        eprintln!(
            "the shadow saw an incomplete {:?} with {} body bytes",
            String::from_utf8_lossy(
                partial
                    .head
                    .raw
                    .split(|b| *b == b'\r')
                    .next()
                    .unwrap_or_default()
            ),
            partial.body.raw.len()
        );
        assert!(
            partial.body.raw.len() as u64 <= CAP + (64 << 10),
            "{} bytes",
            partial.body.raw.len()
        );
        assert!(!partial
            .body
            .raw
            .ends_with(b"0\r\nX-Upload-Done: yes\r\n\r\n"));
    }
    Ok(())
}
