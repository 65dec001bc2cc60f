//! One copy on one connection: the request written while the response is read.
//!
//! Writing and reading run together, because a shadow may answer before the copy's body is
//! complete (a 413, a 401) and stop reading; the copy then ends there, and the connection with
//! it. The connection may carry another copy only if the request was written completely, both
//! sides meant to keep it open, and the response ended exactly where its framing said.

use prometheus_client::metrics::counter::Counter;

use super::{
    error::Failure,
    pool::Connection,
    request::ShadowRequest,
    response::{read_response, Response},
    write::write_request,
};

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exchanged {
    pub response: Response,
    /// The connection is clean and may go back to the pool.
    pub reusable: bool,
}

/// Sends `copy` on `connection` and reads the response to its end; `written` counts the copy
/// as soon as it is completely on its way.
pub(super) async fn exchange(
    connection: &mut Connection,
    copy: &mut ShadowRequest,
    written: &Counter,
) -> Result<Exchanged, Failure> {
    let (mut reader, mut writer) = tokio::io::split(&mut connection.stream);
    let write = write_request(&mut writer, &copy.head, copy.body, copy.body_rx.as_mut());
    let read = read_response(&mut reader, copy.is_head);
    tokio::pin!(write, read);
    let mut complete = false;
    loop {
        tokio::select! {
            // Write first, so a copy written completely is known as such before its response.
            biased;
            result = &mut write, if !complete => {
                result?;
                written.inc();
                complete = true;
            }
            response = &mut read => {
                let response = response?;
                return Ok(Exchanged {
                    response,
                    reusable: complete && response.reusable && request_keeps_alive(&copy.head),
                });
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
