//! Copies on one connection: the requests written while the responses are read.
//!
//! A copy whose body still streams has a connection to itself ([`exchange`]). Complete copies
//! ready together go out pipelined ([`exchange_batch`]): heads and bodies in as few writes as the
//! stream allows, the responses read in order from one buffer, as few reads as their framing
//! allows. Writing and reading run together, because a shadow may answer before it has read
//! everything (a 413, a 401) and stop reading; the exchange then ends there, and the connection
//! with it. A connection may carry more copies only if every request was written completely, both
//! sides meant to keep it open, and the last response ended exactly where its framing said.

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use super::{
    capture::Capture,
    error::Failure,
    pool::Connection,
    request::ShadowRequest,
    response::{read_next_response, read_response_capturing, AnswerCapture, Response},
    write::{write_parts, write_request},
};

/// How an exchange of one copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exchanged {
    pub response: Response,
    /// The connection is clean and may go back to the pool.
    pub reusable: bool,
    /// When the copy was completely written, if it was before its answer ended.
    pub written_at: Option<Instant>,
}

/// Sends `copy` on `connection` and reads the response to its end (into `capture` when the
/// answer is compared); `written` counts the copy as soon as it is completely on its way.
pub(super) async fn exchange(
    connection: &mut Connection,
    copy: &mut ShadowRequest,
    written: &Counter,
    capture: Option<&mut Capture>,
) -> Result<Exchanged, Failure> {
    let (mut reader, mut writer) = tokio::io::split(&mut connection.stream);
    let write = write_request(
        &mut writer,
        &copy.head,
        copy.body,
        &copy.body_ready,
        copy.body_rx.as_mut(),
    );
    let capture = capture.map(|c| c as &mut (dyn AnswerCapture + Send));
    let read = read_response_capturing(&mut reader, copy.is_head, capture);
    tokio::pin!(write, read);
    let mut written_at = None;
    loop {
        tokio::select! {
            // Write first, so a copy written completely is known as such before its response.
            biased;
            result = &mut write, if written_at.is_none() => {
                result?;
                written.inc();
                written_at = Some(Instant::now());
            }
            response = &mut read => {
                let response = response?;
                return Ok(Exchanged {
                    response,
                    reusable: written_at.is_some()
                        && response.reusable
                        && request_keeps_alive(&copy.head),
                    written_at,
                });
            }
        }
    }
}

/// The answers of a batch so far: kept outside the exchange, so that a timeout or a failure
/// does not lose the answers read before it.
#[derive(Debug, Default)]
pub(super) struct Answers {
    /// In the order of the copies, with the time each one's response was complete.
    pub responses: Vec<(Response, Instant)>,
    /// All of the batch was written.
    pub written: bool,
    /// When it was.
    pub written_at: Option<Instant>,
    /// The captures of compared copies' answers, by copy (`None` for the others); those of
    /// answered copies are complete.
    pub captures: Vec<Option<Capture>>,
    /// The last answer said the shadow closes the connection: the copies after it were never
    /// taken up by the shadow (RFC 9112 section 9.6) and may be sent again.
    pub closed_by_shadow: bool,
}

/// Sends the complete `copies` pipelined on `connection` and reads their responses in order into
/// `answers`. `Ok(reusable)` once every copy is answered, or the shadow closed the connection
/// after an answer; `Err` with the failure that cut the rest off.
pub(super) async fn exchange_batch(
    connection: &mut Connection,
    copies: &[&ShadowRequest],
    written: &Counter,
    answers: &mut Answers,
) -> Result<bool, Failure> {
    let mut parts: Vec<Bytes> = Vec::with_capacity(copies.len() * 2);
    for copy in copies {
        parts.push(copy.head.clone());
        parts.extend(copy.body_ready.iter().cloned());
    }
    let (mut reader, mut writer) = tokio::io::split(&mut connection.stream);
    let write = write_parts(&mut writer, &mut parts);
    let mut buf = BytesMut::new();
    let responses = &mut answers.responses;
    let captures = &mut answers.captures;
    let read = async {
        for (index, copy) in copies.iter().enumerate() {
            let capture = captures
                .get_mut(index)
                .and_then(Option::as_mut)
                .map(|c| c as &mut (dyn AnswerCapture + Send));
            let response = read_next_response(&mut reader, &mut buf, copy.is_head, capture).await?;
            responses.push((response, Instant::now()));
            if !response.reusable || !request_keeps_alive(&copy.head) {
                return Ok((false, responses.len()));
            }
        }
        Ok::<_, Failure>((buf.is_empty(), responses.len()))
    };
    tokio::pin!(write, read);
    loop {
        tokio::select! {
            biased;
            result = &mut write, if !answers.written => {
                result?;
                written.inc_by(copies.len() as u64);
                answers.written = true;
                answers.written_at = Some(Instant::now());
            }
            result = &mut read => {
                let (reusable, answered) = result?;
                if answered < copies.len() {
                    // The shadow answered and closed before the rest were read from the wire.
                    answers.closed_by_shadow = true;
                }
                return Ok(reusable && answers.written && answered == copies.len());
            }
        }
    }
}

/// Whether the request itself lets the connection stay open: HTTP/1.1 without
/// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`. A head that does not parse
/// does not.
fn request_keeps_alive(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    let (mut close, mut keep_alive) = (false, false);
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    !close && (request.version == Some(1) || keep_alive)
}

#[cfg(test)]
mod tests {
    use super::request_keeps_alive;

    #[test]
    fn the_request_can_ask_to_close_the_connection() {
        for (head, keeps) in [
            (&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], true),
            (
                b"GET / HTTP/1.1\r\nConnection: Upgrade, close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\n", false),
        ] {
            assert_eq!(
                request_keeps_alive(head),
                keeps,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
