//! Micro-benchmarks of the framing of the client-to-primary stream (`http::RequestFramer`), of
//! the primary's answers (`http::response::ResponseFramer`) and of building a copy's head
//! (`mirror::copy::build_head`), on realistic mixes, in bytes/s and requests (answers)/s:
//! `cargo bench -p mirror-daemon --bench framing`.
//!
//! The streams are fed the way the relay feeds them: one framer per connection, kept across
//! requests, in reads of at most 16 KiB (the default `relay.buffer_size`), with the frames vector
//! reused.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mirror_daemon::{
    http::{
        response::{Expected, ResponseFrame, ResponseFramer},
        Frame, FramingLimits, RequestFramer,
    },
    mirror::copy::{build_head, Edits, HostRewrite},
};

/// The relay's default read size.
const READ: usize = 16 * 1024;

/// A small GET as browsers and service clients send it: ~500 bytes, 12 fields.
fn small_get(i: usize) -> Vec<u8> {
    format!(
        "GET /api/v1/orders/{i}?include=items&currency=EUR HTTP/1.1\r\n\
         Host: orders.prod.svc.cluster.local\r\n\
         User-Agent: checkout-service/2.14.1 (go-http-client)\r\n\
         Accept: application/json\r\n\
         Accept-Encoding: gzip, deflate, br\r\n\
         Accept-Language: en-GB,en;q=0.9\r\n\
         Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\r\n\
         traceparent: 00-4bf92f3577b34da6a3ce929d0e0e{i:04x}-00f067aa0ba902b7-01\r\n\
         X-Request-Id: 7f1c2a9e-3b4d-4c5e-8f60-{i:012x}\r\n\
         X-Forwarded-For: 10.244.1.2\r\n\
         X-Forwarded-Proto: http\r\n\
         Cookie: session=9f8e7d6c5b4a; theme=dark\r\n\
         Connection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

/// A POST with a 1 KiB JSON body and a Content-Length.
fn post_json(i: usize) -> Vec<u8> {
    let mut body = format!("{{\"order\":{i},\"customer\":\"c-{i:08}\",\"items\":[");
    while body.len() < 1000 {
        body.push_str("{\"sku\":\"SKU-0001\",\"qty\":1,\"price\":\"12.50\"},");
    }
    body.truncate(1022);
    body.push_str("]}");
    let mut request = format!(
        "POST /api/v1/orders HTTP/1.1\r\n\
         Host: orders.prod.svc.cluster.local\r\n\
         User-Agent: checkout-service/2.14.1 (go-http-client)\r\n\
         Content-Type: application/json\r\n\
         Accept: application/json\r\n\
         traceparent: 00-4bf92f3577b34da6a3ce929d0e0e{i:04x}-00f067aa0ba902b7-01\r\n\
         X-Request-Id: 7f1c2a9e-3b4d-4c5e-8f60-{i:012x}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// A chunked upload: 64 KiB in 16 chunks of 4 KiB, with a trailer.
fn chunked_upload(i: usize) -> Vec<u8> {
    let mut request = format!(
        "POST /api/v1/uploads/{i} HTTP/1.1\r\n\
         Host: files.prod.svc.cluster.local\r\n\
         User-Agent: uploader/1.0\r\n\
         Content-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\n\
         Trailer: X-Checksum\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b'a' + (i % 26) as u8; 4096];
    for _ in 0..16 {
        request.extend_from_slice(b"1000\r\n");
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\nX-Checksum: 1234abcd\r\n\r\n");
    request
}

/// One workload: the stream a connection carries, in the reads the relay would make.
struct Workload {
    name: &'static str,
    reads: Vec<Vec<u8>>,
    /// For answers: how many requests the relay has framed (and announces to the response
    /// framer) before each read.
    announced: Vec<usize>,
    bytes: u64,
    /// Requests, or answers.
    requests: u64,
}

impl Workload {
    /// `requests` (or answers) written one per read (a client waiting for each response); each
    /// answer's request is announced just before its first read.
    fn one_per_read(name: &'static str, requests: Vec<Vec<u8>>) -> Workload {
        let n = requests.len() as u64;
        let (announced, reads) = requests
            .iter()
            .flat_map(|r| {
                r.chunks(READ)
                    .enumerate()
                    .map(|(i, read)| (usize::from(i == 0), read.to_vec()))
            })
            .unzip();
        Workload::new(name, reads, announced, n)
    }

    /// `requests` (or answers) written back to back (pipelined), cut into reads of [`READ`]
    /// bytes; all their requests are announced before the first read.
    fn pipelined(name: &'static str, requests: Vec<Vec<u8>>) -> Workload {
        let n = requests.len();
        let stream = requests.concat();
        let reads: Vec<Vec<u8>> = stream.chunks(READ).map(<[u8]>::to_vec).collect();
        let mut announced = vec![0; reads.len()];
        announced[0] = n;
        Workload::new(name, reads, announced, n as u64)
    }

    fn new(
        name: &'static str,
        reads: Vec<Vec<u8>>,
        announced: Vec<usize>,
        requests: u64,
    ) -> Workload {
        let bytes = reads.iter().map(|r| r.len() as u64).sum();
        Workload {
            name,
            reads,
            announced,
            bytes,
            requests,
        }
    }
}

fn workloads() -> Vec<Workload> {
    // A day's mix on a typical API: mostly small GETs, some JSON POSTs, a few uploads.
    let mix: Vec<Vec<u8>> = (0..100)
        .map(|i| match i % 20 {
            0..=13 => small_get(i),
            14..=18 => post_json(i),
            _ => chunked_upload(i),
        })
        .collect();
    vec![
        Workload::one_per_read("small_get", (0..64).map(small_get).collect()),
        Workload::one_per_read("post_json_1k", (0..64).map(post_json).collect()),
        Workload::one_per_read("chunked_upload_64k", (0..4).map(chunked_upload).collect()),
        Workload::pipelined("pipelined_get_x16", (0..16).map(small_get).collect()),
        Workload::one_per_read("mix", mix),
        // The worst case for the head scanner: a head arriving in 7-byte pieces.
        Workload::new(
            "small_get_7_byte_reads",
            small_get(0).chunks(7).map(<[u8]>::to_vec).collect(),
            Vec::new(),
            1,
        ),
    ]
}

/// Feeds every read to one framer, as one connection would; returns the frames seen.
fn frame(framer: &mut RequestFramer, frames: &mut Vec<Frame>, workload: &Workload) -> usize {
    let mut seen = 0;
    for read in &workload.reads {
        framer.feed(read, frames);
        seen += frames.len();
        frames.clear();
    }
    seen
}

fn check(workload: &Workload) {
    let mut framer = RequestFramer::new(FramingLimits::default());
    let mut frames = Vec::new();
    let mut ends = 0;
    for read in &workload.reads {
        framer.feed(read, &mut frames);
        ends += frames.iter().filter(|f| matches!(f, Frame::End)).count() as u64;
        assert!(
            !frames.iter().any(|f| matches!(f, Frame::Tunnel(_))),
            "{}: tunnelled",
            workload.name
        );
        frames.clear();
    }
    assert_eq!(
        ends, workload.requests,
        "{}: requests framed",
        workload.name
    );
}

fn framing(c: &mut Criterion) {
    let workloads = workloads();
    for workload in &workloads {
        check(workload);
    }
    for (group_name, per_request) in [("framing_bytes", false), ("framing_requests", true)] {
        let mut group = c.benchmark_group(group_name);
        for workload in &workloads {
            group.throughput(if per_request {
                Throughput::Elements(workload.requests)
            } else {
                Throughput::Bytes(workload.bytes)
            });
            group.bench_with_input(
                BenchmarkId::from_parameter(workload.name),
                workload,
                |b, workload| {
                    let mut framer = RequestFramer::new(FramingLimits::default());
                    let mut frames = Vec::new();
                    b.iter(|| black_box(frame(&mut framer, &mut frames, black_box(workload))));
                },
            );
        }
        group.finish();
    }
}

fn copy_head(c: &mut Criterion) {
    let mut framer = RequestFramer::new(FramingLimits::default());
    let mut frames = Vec::new();
    framer.feed(&small_get(7), &mut frames);
    let Some(Frame::Head(head)) = frames.into_iter().next() else {
        panic!("no head");
    };
    // The edits of the README's example target: suffix the host, drop credentials, mark it.
    let edits = Edits {
        host: HostRewrite::Suffix("-shadow".into()),
        remove: vec!["authorization".into(), "cookie".into(), "x-shadow".into()],
        add: vec![("x-shadow".into(), "true".into())],
    };
    let mut group = c.benchmark_group("copy_head");
    group.throughput(Throughput::Elements(1));
    group.bench_function("small_get", |b| {
        b.iter(|| black_box(build_head(black_box(&head), &edits)))
    });
    group.finish();
}

/// A 1 KiB JSON body, as an API answers.
fn json_1k(i: usize) -> String {
    let mut body = format!("{{\"order\":{i},\"status\":\"confirmed\",\"items\":[");
    while body.len() < 1000 {
        body.push_str("{\"sku\":\"SKU-0001\",\"qty\":1,\"price\":\"12.50\"},");
    }
    body.truncate(1022);
    body.push_str("]}");
    body
}

/// A 200 with a 1 KiB JSON body and a Content-Length, with the fields a Go or Java service sends.
fn answer_json(i: usize) -> Vec<u8> {
    let body = json_1k(i);
    format!(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: application/json; charset=utf-8\r\n\
         Date: Wed, 02 Dec 2026 10:00:00 GMT\r\n\
         Cache-Control: no-store\r\n\
         X-Request-Id: 7f1c2a9e-3b4d-4c5e-8f60-{i:012x}\r\n\
         Vary: Accept-Encoding\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A chunked 200 streaming 8 KiB of JSON in 8 chunks of 1 KiB, with a trailer.
fn answer_chunked(i: usize) -> Vec<u8> {
    let mut answer = b"HTTP/1.1 200 OK\r\n\
         Content-Type: application/json\r\n\
         Date: Wed, 02 Dec 2026 10:00:00 GMT\r\n\
         Transfer-Encoding: chunked\r\n\
         Trailer: X-Checksum\r\n\r\n"
        .to_vec();
    for _ in 0..8 {
        let chunk = json_1k(i);
        answer.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        answer.extend_from_slice(chunk.as_bytes());
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(b"0\r\nX-Checksum: 1234abcd\r\n\r\n");
    answer
}

/// A 304 to a conditional GET: a head alone.
fn answer_not_modified(i: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 304 Not Modified\r\n\
         Date: Wed, 02 Dec 2026 10:00:00 GMT\r\n\
         ETag: \"{i:016x}\"\r\n\
         Cache-Control: max-age=60\r\n\r\n"
    )
    .into_bytes()
}

fn answer_workloads() -> Vec<Workload> {
    // Mostly JSON answers, some streamed, some cache hits.
    let mix: Vec<Vec<u8>> = (0..100)
        .map(|i| match i % 20 {
            0..=14 => answer_json(i),
            15..=17 => answer_not_modified(i),
            _ => answer_chunked(i),
        })
        .collect();
    vec![
        Workload::one_per_read("json_1k", (0..64).map(answer_json).collect()),
        Workload::one_per_read("chunked_8k", (0..16).map(answer_chunked).collect()),
        Workload::pipelined("pipelined_json_1k_x16", (0..16).map(answer_json).collect()),
        Workload::one_per_read("mix", mix),
    ]
}

/// Feeds every read to one framer, announcing requests as the relay would; returns the frames.
fn frame_answers(
    framer: &mut ResponseFramer,
    frames: &mut Vec<ResponseFrame>,
    workload: &Workload,
) -> usize {
    let mut seen = 0;
    for (read, announced) in workload.reads.iter().zip(&workload.announced) {
        for _ in 0..*announced {
            framer.expect(Expected::plain());
        }
        framer.feed(read, frames);
        seen += frames.len();
        frames.clear();
    }
    seen
}

fn response_framing(c: &mut Criterion) {
    let workloads = answer_workloads();
    for workload in &workloads {
        let mut framer = ResponseFramer::new(FramingLimits::default());
        let mut frames = Vec::new();
        let mut ends = 0;
        for (read, announced) in workload.reads.iter().zip(&workload.announced) {
            for _ in 0..*announced {
                framer.expect(Expected::plain());
            }
            framer.feed(read, &mut frames);
            ends += frames
                .iter()
                .filter(|f| matches!(f, ResponseFrame::End { reusable: true }))
                .count() as u64;
            frames.clear();
        }
        assert_eq!(ends, workload.requests, "{}: answers framed", workload.name);
        assert!(framer.is_idle(), "{}: idle at the end", workload.name);
    }
    for (group_name, per_answer) in [
        ("response_framing_bytes", false),
        ("response_framing_answers", true),
    ] {
        let mut group = c.benchmark_group(group_name);
        for workload in &workloads {
            group.throughput(if per_answer {
                Throughput::Elements(workload.requests)
            } else {
                Throughput::Bytes(workload.bytes)
            });
            group.bench_with_input(
                BenchmarkId::from_parameter(workload.name),
                workload,
                |b, workload| {
                    let mut framer = ResponseFramer::new(FramingLimits::default());
                    let mut frames = Vec::new();
                    b.iter(|| {
                        black_box(frame_answers(&mut framer, &mut frames, black_box(workload)))
                    });
                },
            );
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(30);
    targets = framing, response_framing, copy_head
}
criterion_main!(benches);
