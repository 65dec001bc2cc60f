//! Every verdict, reached the way the engine reaches it.

use std::io::Write as _;

use bytes::Bytes;

use super::*;
use crate::compare::{NotCompared, Verdict};

#[test]
fn identical_answers_match() {
    let fixture = Fixture::new("");
    let body = r#"{"id":7,"total":"12.50"}"#;
    assert_eq!(
        fixture.record(json_answer(body), json_answer(body)),
        Verdict::Match
    );
    // Equal as JSON values though spelled differently.
    assert_eq!(
        fixture.record(
            json_answer(r#"{"id":7,"total":1.0}"#),
            json_answer(r#"{ "total": 1, "id": 7.0 }"#)
        ),
        Verdict::Match
    );
    // Bodies that are not JSON are compared byte for byte.
    assert_eq!(
        fixture.record(answer("hello", &[]), answer("hello", &[])),
        Verdict::Match
    );
}

#[test]
fn a_different_status_or_grpc_status_is_a_status_mismatch() {
    let fixture = Fixture::new("");
    let mut failed = json_answer(r#"{"error":"boom"}"#);
    failed.status = 500;
    assert_eq!(
        fixture.record(json_answer("{}"), failed),
        Verdict::StatusMismatch
    );
    let grpc = |code| Answer {
        grpc_status: Some(code),
        ..answer(
            "\0\0\0\0\x02\x08\x01",
            &[("content-type", "application/grpc")],
        )
    };
    assert_eq!(fixture.record(grpc(0), grpc(0)), Verdict::Match);
    assert_eq!(fixture.record(grpc(0), grpc(14)), Verdict::StatusMismatch);
    // A primary cut off before its trailers has no known grpc-status: not a mismatch.
    let mut cut = grpc(0);
    cut.body = AnswerBody::CutOff;
    cut.grpc_status = None;
    assert_eq!(
        fixture.record(cut, grpc(0)),
        Verdict::NotCompared(NotCompared::PrimaryCutOff)
    );
}

#[test]
fn a_differing_json_field_is_a_body_mismatch_and_ignored_paths_are_not() {
    let fixture = Fixture::new(r#"ignore = ["/items/*/id", "/generated_at"]"#);
    let primary = r#"{"items":[{"id":"a","price":10}],"generated_at":"12:00:00"}"#;
    let same_but_ignored = r#"{"items":[{"id":"b","price":10}],"generated_at":"12:00:01"}"#;
    let different = r#"{"items":[{"id":"b","price":11}],"generated_at":"12:00:01"}"#;
    assert_eq!(
        fixture.record(json_answer(primary), json_answer(same_but_ignored)),
        Verdict::Match
    );
    assert_eq!(
        fixture.record(json_answer(primary), json_answer(different)),
        Verdict::BodyMismatch
    );
    let report = fixture.comparison.report();
    let mismatch = &report.last_mismatches[0];
    assert_eq!(mismatch.fields.len(), 1, "{mismatch:?}");
    assert_eq!(mismatch.fields[0].field, "/items/0/price");
    assert_eq!(mismatch.fields[0].primary.as_deref(), Some("10"));
    assert_eq!(mismatch.fields[0].shadow.as_deref(), Some("11"));
    // Bytes that differ where no JSON is: the whole body, with where it differs.
    assert_eq!(
        fixture.record(answer("<p>12.50</p>", &[]), answer("<p>13.00</p>", &[])),
        Verdict::BodyMismatch
    );
    let report = fixture.comparison.report();
    let field = &report.last_mismatches[0].fields[0];
    assert_eq!(field.field, "body");
    assert_eq!(field.shadow.as_deref(), Some("byte 4 of 12: <p>13.00</p>"));
}

#[test]
fn only_configured_headers_are_compared() {
    let fixture = Fixture::new(r#"headers = ["ETag", "grpc-message"]"#);
    let with = |etag: &str, date: &str| answer("x", &[("etag", etag), ("date", date)]);
    assert_eq!(
        fixture.record(with("\"v1\"", "Mon"), with("\"v1\"", "Tue")),
        Verdict::Match,
        "date is not compared"
    );
    assert_eq!(
        fixture.record(with("\"v1\"", "Mon"), with("\"v2\"", "Mon")),
        Verdict::HeaderMismatch
    );
    // Trailers count as headers (gRPC's grpc-message).
    let mut primary = answer("x", &[]);
    primary.trailers = vec![("grpc-message".into(), Bytes::from_static(b"ok"))];
    let mut shadow = primary.clone();
    shadow.trailers[0].1 = Bytes::from_static(b"deadline");
    assert_eq!(fixture.record(primary, shadow), Verdict::HeaderMismatch);
    // The body wins when both differ.
    assert_eq!(
        fixture.record(answer("a", &[("etag", "1")]), answer("b", &[("etag", "2")])),
        Verdict::BodyMismatch
    );
    let report = fixture.comparison.report();
    let fields: Vec<&str> = report.last_mismatches[0]
        .fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(fields, ["header:etag", "body"]);
}

#[test]
fn shadow_failures_and_cut_off_shadow_answers_are_shadow_errors() {
    let fixture = Fixture::new("");
    let primary = Primary::Answered(json_answer("{}"));
    for kind in ["timeout", "reset", "refused", "timeout"] {
        assert_eq!(
            fixture
                .comparison
                .record(&request(), &primary, &Shadow::Failed(kind)),
            Verdict::ShadowError(kind)
        );
    }
    let mut cut = json_answer("{}");
    cut.body = AnswerBody::CutOff;
    assert_eq!(
        fixture.record(json_answer("{}"), cut),
        Verdict::ShadowError("cut_off")
    );
    let report = fixture.comparison.report();
    assert_eq!(report.verdicts.shadow_error, 5);
    assert_eq!(report.shadow_errors["timeout"], 2);
    assert_eq!(report.shadow_errors["cut_off"], 1);
    assert_eq!(
        report.last_mismatches[0].shadow_error.as_deref(),
        Some("cut_off")
    );
}

#[test]
fn pairs_without_a_primary_answer_are_not_compared_with_their_reason() {
    let fixture = Fixture::new("");
    let shadow = Shadow::Answered(json_answer("{}"));
    assert_eq!(
        fixture
            .comparison
            .record(&request(), &Primary::Stopped, &shadow),
        Verdict::NotCompared(NotCompared::Stopped)
    );
    assert_eq!(
        fixture
            .comparison
            .record(&request(), &Primary::NoAnswer, &Shadow::Failed("timeout")),
        Verdict::NotCompared(NotCompared::NoAnswer)
    );
    let mut cut = json_answer("{}");
    cut.body = AnswerBody::CutOff;
    assert_eq!(
        fixture.record(cut, json_answer("{}")),
        Verdict::NotCompared(NotCompared::PrimaryCutOff)
    );
    let report = fixture.comparison.report();
    assert_eq!(report.not_compared["stopped"], 1);
    assert_eq!(report.not_compared["no_answer"], 1);
    assert_eq!(report.not_compared["primary_cut_off"], 1);
    assert_eq!(report.not_compared["over_cap"], 0);
    assert!(report.last_mismatches.is_empty(), "not mismatches");
}

#[test]
fn over_the_cap_pairs_are_compared_by_status_and_headers_only_and_say_so() {
    let fixture = Fixture::new("max_body_bytes = 16\nheaders = [\"etag\"]");
    let big = json_answer(r#"{"a":"0123456789abcdef"}"#);
    let mut over = answer("", &[("etag", "1")]);
    over.body = AnswerBody::OverCap;
    assert_eq!(
        fixture.record(big.clone(), json_answer("{}")),
        Verdict::NotCompared(NotCompared::OverCap),
        "a complete body beyond the cap"
    );
    assert_eq!(
        fixture.record(over.clone(), answer("", &[("etag", "1")])),
        Verdict::NotCompared(NotCompared::OverCap)
    );
    let mut other_etag = over.clone();
    other_etag.headers[0].1 = Bytes::from_static(b"2");
    assert_eq!(
        fixture.record(over.clone(), other_etag),
        Verdict::HeaderMismatch
    );
    let mut failed = over;
    failed.status = 503;
    assert_eq!(
        fixture.record(answer("", &[("etag", "1")]), failed),
        Verdict::StatusMismatch
    );
}

#[test]
fn compressed_answers_are_decoded_first_and_a_bomb_is_over_the_cap() {
    let fixture = Fixture::new("max_body_bytes = 65536");
    let body = br#"{"id":7,"total":"12.50"}"#;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).expect("gzip");
    let gzipped = encoder.finish().expect("gzip");
    let coded = |bytes: &[u8], coding: &str| Answer {
        body: AnswerBody::Complete(Bytes::copy_from_slice(bytes)),
        ..answer(
            "",
            &[
                ("content-type", "application/json"),
                ("content-encoding", coding),
            ],
        )
    };
    assert_eq!(
        fixture.record(
            json_answer(std::str::from_utf8(body).expect("utf8")),
            coded(&gzipped, "gzip")
        ),
        Verdict::Match
    );
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; 4 << 20]).expect("gzip");
    let bomb = encoder.finish().expect("gzip");
    assert!(bomb.len() < 65536);
    assert_eq!(
        fixture.record(json_answer("{}"), coded(&bomb, "gzip")),
        Verdict::NotCompared(NotCompared::OverCap)
    );
    // A primary in a coding nobody knows cannot be compared; a shadow whose body does not
    // decode answers differently.
    assert_eq!(
        fixture.record(coded(b"x", "zstd"), json_answer("{}")),
        Verdict::NotCompared(NotCompared::Undecodable)
    );
    assert_eq!(
        fixture.record(json_answer("{}"), coded(b"not gzip", "gzip")),
        Verdict::BodyMismatch
    );
}

#[test]
fn noisy_fields_leave_verdicts_when_asked_and_rare_differences_stay() {
    let fixture = Fixture::new("[mirror.rules.compare.noise]\nmin_pairs = 20\nthreshold = 0.9");
    let mut verdicts = Vec::new();
    for i in 0..200 {
        let price = if i % 50 == 49 { "13.00" } else { "12.50" };
        verdicts.push(fixture.record(
            json_answer(&format!(r#"{{"generated_at":"p{i}","price":"12.50"}}"#)),
            json_answer(&format!(r#"{{"generated_at":"s{i}","price":"{price}"}}"#)),
        ));
    }
    // Before the window holds min_pairs, the timestamp decides; then it is noise.
    assert!(verdicts[..20].iter().all(|v| *v == Verdict::BodyMismatch));
    let later_mismatches: Vec<usize> = (20..200)
        .filter(|&i| verdicts[i] == Verdict::BodyMismatch)
        .collect();
    assert_eq!(
        later_mismatches,
        [49, 99, 149, 199],
        "only the price changes"
    );
    let report = fixture.comparison.report();
    assert_eq!(report.verdicts.matched, 176);
    assert_eq!(report.matched_apart_from_noise, 176);
    let field = |name: &str| {
        report
            .fields
            .iter()
            .find(|f| f.field == name)
            .unwrap_or_else(|| panic!("{name} in {:?}", report.fields))
    };
    assert!(field("/generated_at").noise);
    assert_eq!(field("/generated_at").rate, 1.0);
    assert!(!field("/price").noise);
    assert_eq!(field("/price").differing_pairs, 4);
    assert_eq!(field("/price").rate, 0.02);
    assert_eq!(report.last_mismatches[0].noisy_fields_left_out, 1);

    // With ignore_noisy = false, noise is reported but still decides.
    let fixture = Fixture::new("[mirror.rules.compare.noise]\nignore_noisy = false\nmin_pairs = 5");
    for i in 0..10 {
        assert_eq!(
            fixture.record(
                json_answer(&format!(r#"{{"t":{i}}}"#)),
                json_answer(&format!(r#"{{"t":{}}}"#, i + 1))
            ),
            Verdict::BodyMismatch
        );
    }
    assert!(fixture.comparison.report().fields[0].noise);
}

#[test]
fn a_whole_body_that_always_differs_is_never_left_out() {
    let fixture = Fixture::new("[mirror.rules.compare.noise]\nmin_pairs = 5");
    for i in 0..20 {
        assert_eq!(
            fixture.record(answer(&format!("a{i}"), &[]), answer(&format!("b{i}"), &[])),
            Verdict::BodyMismatch
        );
    }
    let report = fixture.comparison.report();
    assert_eq!(report.fields[0].field, "body");
    assert!(report.fields[0].noise, "reported as noise");
}

#[test]
fn status_mismatches_do_not_count_for_noise() {
    let fixture = Fixture::new("");
    let mut failed = json_answer(r#"{"error":"x"}"#);
    failed.status = 500;
    for _ in 0..5 {
        fixture.record(json_answer(r#"{"id":1}"#), failed.clone());
    }
    let report = fixture.comparison.report();
    assert_eq!(report.window_pairs, 0);
    assert!(report.fields.is_empty());
}

/// A gRPC answer: 200, `content-type`, the `body` as sent, and `grpc-status` in the trailers
/// (or, `trailers_only`, in the head), its status read as the captures read it.
fn grpc_answer(content_type: &str, body: &[u8], code: &str, trailers_only: bool) -> Answer {
    let mut headers = vec![(
        "content-type".to_string(),
        Bytes::copy_from_slice(content_type.as_bytes()),
    )];
    let status = (
        "grpc-status".to_string(),
        Bytes::copy_from_slice(code.as_bytes()),
    );
    let mut trailers = Vec::new();
    if trailers_only {
        headers.push(status);
    } else {
        trailers.push(status);
    }
    Answer {
        grpc_status: crate::compare::grpc::status(&headers, &trailers),
        headers,
        trailers,
        body: AnswerBody::Complete(Bytes::copy_from_slice(body)),
        ..answer("", &[])
    }
}

#[test]
fn grpc_answers_are_judged_by_their_grpc_status_and_their_bytes() {
    let fixture = Fixture::new("");
    let grpc = "application/grpc";
    // The same code, in the trailers or a Trailers-Only head: a match.
    assert_eq!(
        fixture.record(
            grpc_answer(grpc, b"", "5", true),
            grpc_answer(grpc, b"", "5", false)
        ),
        Verdict::Match
    );
    // Both 200, codes differ: a status mismatch, reported with both codes.
    let message = b"\0\0\0\0\x03abc";
    assert_eq!(
        fixture.record(
            grpc_answer(grpc, message, "0", false),
            grpc_answer(grpc, b"", "5", true)
        ),
        Verdict::StatusMismatch
    );
    let report = fixture.reports.report();
    let mismatch = &report.comparisons[0].last_mismatches[0];
    assert_eq!(
        (
            mismatch.primary_status,
            mismatch.primary_grpc_status,
            mismatch.shadow_status,
            mismatch.shadow_grpc_status
        ),
        (Some(200), Some(0), Some(200), Some(5))
    );
    let text = crate::compare::render::render(&report);
    assert!(
        text.contains("primary 200 grpc-status 0, shadow 200 grpc-status 5"),
        "{text}"
    );
    // A gRPC answer without a code differs from one with a code.
    assert_eq!(
        fixture.record(
            grpc_answer(grpc, message, "0", false),
            Answer {
                trailers: Vec::new(),
                grpc_status: None,
                ..grpc_answer(grpc, message, "0", false)
            }
        ),
        Verdict::StatusMismatch
    );
    // Messages are compared byte for byte, never as JSON, even gRPC's JSON flavour.
    let json = "application/grpc+json";
    let compact = b"\0\0\0\0\x07{\"a\":1}";
    let spaced = b"\0\0\0\0\x0b{ \"a\": 1 }";
    assert_eq!(
        fixture.record(
            grpc_answer(json, compact, "0", false),
            grpc_answer(json, spaced, "0", false)
        ),
        Verdict::BodyMismatch
    );
    assert_eq!(
        fixture.record(
            grpc_answer(json, compact, "0", false),
            grpc_answer(json, compact, "0", false)
        ),
        Verdict::Match
    );
    // `grpc-status` says nothing in an answer that is not gRPC.
    assert_eq!(
        fixture.record(
            grpc_answer("application/json", b"{}", "0", false),
            grpc_answer("application/json", b"{}", "13", false)
        ),
        Verdict::Match
    );
}
