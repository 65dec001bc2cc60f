//! Reading `/comparisons` from a running daemon's admin endpoint, for `mirror-daemon
//! comparisons`: one plain HTTP/1.1 GET over hyper's client connection.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::report::Report;

/// How long the whole exchange may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong reading the report; every case names the admin endpoint.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to the admin endpoint at {admin}: {source} (is the daemon running, and is --admin its admin.address?)")]
    Connect {
        admin: SocketAddr,
        source: std::io::Error,
    },
    #[error("the admin endpoint at {admin} did not answer within {}s", TIMEOUT.as_secs())]
    Timeout { admin: SocketAddr },
    #[error("the admin endpoint at {admin} broke the exchange: {source}")]
    Http {
        admin: SocketAddr,
        source: hyper::Error,
    },
    #[error("the admin endpoint at {admin} answered {status} to /comparisons (an older daemon?)")]
    Status {
        admin: SocketAddr,
        status: http::StatusCode,
    },
    #[error("the admin endpoint at {admin} sent a report this command cannot read: {source}")]
    Json {
        admin: SocketAddr,
        source: serde_json::Error,
    },
}

/// The report of the daemon whose admin endpoint is `admin`.
pub async fn fetch(admin: SocketAddr) -> Result<Report, FetchError> {
    match tokio::time::timeout(TIMEOUT, exchange(admin)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout { admin }),
    }
}

async fn exchange(admin: SocketAddr) -> Result<Report, FetchError> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|source| FetchError::Connect { admin, source })?;
    let http = |source| FetchError::Http { admin, source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get("/comparisons")
        .header(http::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a static request is valid");
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    driver.abort();
    if status != http::StatusCode::OK {
        return Err(FetchError::Status { admin, status });
    }
    serde_json::from_slice(&body).map_err(|source| FetchError::Json { admin, source })
}
