//! TLS to a shadow target (rustls, ring), set up once when the target starts.
//!
//! The certificate must match `tls.server_name`, or else the host of `address`, and chain to the
//! CAs of `tls.ca_file`, or else to the Mozilla roots built into the binary. ALPN offers one
//! protocol per connection, the copies' own: `http/1.1` for HTTP/1.1 copies, `h2` for HTTP/2 ones.

use std::{io::BufReader, sync::Arc};

use rustls::{pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::error::Error;
use crate::config::Tls;

/// What a new connection needs to start TLS.
#[derive(Clone)]
pub(super) struct TlsClient {
    pub connector: TlsConnector,
    /// The same with ALPN `h2`.
    pub h2_connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Reads the CA bundle and checks the server name; `host` is the host of `address`.
    pub fn new(target: &str, tls: &Tls, host: &str) -> Result<Self, Error> {
        let roots = match &tls.ca_file {
            Some(path) => {
                let ca_error = |source| Error::CaFile {
                    target: target.to_string(),
                    path: path.clone(),
                    source,
                };
                let file = std::fs::File::open(path).map_err(ca_error)?;
                let certs = rustls_pemfile::certs(&mut BufReader::new(file))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ca_error)?;
                let mut roots = RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(Error::NoCaCertificate {
                        target: target.to_string(),
                        path: path.clone(),
                    });
                }
                roots
            }
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let name = tls.server_name.as_deref().unwrap_or(host);
        let server_name =
            ServerName::try_from(name.to_string()).map_err(|_| Error::ServerName {
                target: target.to_string(),
                name: name.to_string(),
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| Error::Tls {
                target: target.to_string(),
                source,
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut h2_config = config.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        h2_config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            h2_connector: TlsConnector::from(Arc::new(h2_config)),
            server_name,
        })
    }
}
