//! TLS for the peer protocol, from `gRPC.tls`: the server's identity and,
//! with `requireClientCert`, the CA its clients must be signed by; the
//! client's CA, its own certificate (for mutual TLS) and the name it
//! expects (`serverHostOverride`, or the peer's host).

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::Tls;

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read.
    #[error("gRPC.tls.{key}: cannot read {path}: {source}")]
    Read {
        /// The config key that names it (`ca`, `cert`, `key`).
        key: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file TLS needs is not configured.
    #[error("gRPC.tls.{0} is required when TLS is enabled")]
    Missing(&'static str),
}

fn read(key: &'static str, path: Option<&Path>) -> Result<Vec<u8>, TlsError> {
    let path = path.ok_or(TlsError::Missing(key))?;
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.display().to_string(),
        source,
    })
}

/// The server side, or `None` when TLS is off.
pub fn server_config(tls: &Tls) -> Result<Option<ServerTlsConfig>, TlsError> {
    if !tls.enabled {
        return Ok(None);
    }
    let identity = Identity::from_pem(
        read("cert", tls.cert.as_deref())?,
        read("key", tls.key.as_deref())?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if tls.require_client_cert {
        config = config.client_ca_root(Certificate::from_pem(read("ca", tls.ca.as_deref())?));
    }
    Ok(Some(config))
}

/// The client side, without the expected server name (set per peer), or
/// `None` when TLS is off.
pub fn client_config(tls: &Tls) -> Result<Option<ClientTlsConfig>, TlsError> {
    if !tls.enabled {
        return Ok(None);
    }
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca", tls.ca.as_deref())?));
    if tls.cert.is_some() && tls.key.is_some() {
        config = config.identity(Identity::from_pem(
            read("cert", tls.cert.as_deref())?,
            read("key", tls.key.as_deref())?,
        ));
    }
    Ok(Some(config))
}
