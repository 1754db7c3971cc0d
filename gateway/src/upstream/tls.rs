//! Upstream TLS trust: a route's own CA bundle, in the form Pingora's connector takes.

use std::path::Path;
use std::sync::Arc;

use pingora::utils::tls::WrappedX509;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A CA bundle for verifying one route's upstream, in Pingora's form.
pub(crate) type CaBundle = Arc<[WrappedX509]>;

/// Why a CA bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("ca_file '{path}': {reason}")]
pub(crate) struct CaFileError {
    /// The file.
    pub(crate) path: String,
    /// What was wrong.
    pub(crate) reason: String,
}

/// Loads a PEM CA bundle into Pingora's form, refusing files without a valid certificate.
pub(crate) fn load_ca_bundle(path: &Path) -> Result<CaBundle, CaFileError> {
    let err = |reason: String| CaFileError {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let der = cert.map_err(|e| err(format!("not a PEM certificate: {e}")))?;
        // Validate before Pingora's parser sees it: that one panics on malformed DER.
        let mut store = pingora::tls::RootCertStore::empty();
        store
            .add(der.clone())
            .map_err(|e| err(format!("invalid certificate: {e}")))?;
        certs.push(WrappedX509::new(
            der.to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}
