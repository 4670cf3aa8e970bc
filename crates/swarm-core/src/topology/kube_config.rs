//! A `kube::Client` from explicit settings.
//!
//! The facade resolves 0.5.1's options, environment and service-account files into
//! [`KubeSettings`]; this turns them into a client. `kube::Config` is non-exhaustive, so
//! it starts from `Config::new(url)`. TLS is verified against the given CA by default;
//! skipping it is an explicit, logged choice (docs/compat.md §2).

use std::{path::PathBuf, sync::Arc, time::Duration};

use hyper::{header::AUTHORIZATION, Request};
use kube::client::{Body, ClientBuilder};
use kube::config::Config;
use kube::Client;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tower::timeout::{error::Elapsed, TimeoutLayer};
use tower::util::{option_layer, MapErrLayer, MapRequestLayer};
use tower::BoxError;

use super::{token_file::TokenFile, TopologyError, KUBERNETES_TARGET};

/// How long a request to the API may wait for the head of its answer, connection
/// included: an API server that accepts connections and never answers (overloaded, or
/// behind a broken proxy) is reported and retried instead of waited on for ever. A
/// watch's answer starts at once; then its body has kube's own idle limit (the watch's
/// `timeoutSeconds` plus a margin).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach the Kubernetes API, and what to watch.
#[derive(Clone, Default)]
pub struct KubeSettings {
    /// The API server, `http(s)://host:port`.
    pub url: String,
    /// The namespace of the watched Service.
    pub namespace: String,
    /// The label selector of the Service's EndpointSlices (or Endpoints), `app=<name>`.
    pub selector: String,
    /// A bearer token. Takes precedence over `token_file`.
    pub token: Option<String>,
    /// A file holding the bearer token, re-read when it rotates (projected tokens).
    pub token_file: Option<PathBuf>,
    /// The CA bundle (PEM) that signs the API server's certificate. Without it, the
    /// platform's trust store is used.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip TLS verification (logged as a warning).
    pub accept_invalid_certs: bool,
}

impl std::fmt::Debug for KubeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSettings")
            .field("url", &self.url)
            .field("namespace", &self.namespace)
            .field("selector", &self.selector)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

/// Builds the `kube::Config` of `settings`.
pub(crate) fn config(settings: &KubeSettings) -> Result<Config, TopologyError> {
    let url: hyper::Uri = settings
        .url
        .parse()
        .map_err(|e| TopologyError::Config(format!("bad API URL {:?}: {e}", settings.url)))?;
    if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
        return Err(TopologyError::Config(format!(
            "bad API URL {:?}: expected http(s)://host:port",
            settings.url
        )));
    }
    let mut config = Config::new(url);
    // kube's own retry of 429/503/504 backs off up to 15 times (minutes in all) before
    // an error surfaces; the watcher and the probe have their own backoff, and an
    // outage must be reported while it lasts.
    config.default_retry = false;
    config.default_namespace = settings.namespace.clone();
    config.auth_info.token = settings.token.clone().map(Into::into);
    if let Some(pem) = &settings.ca_pem {
        config.root_cert = Some(der_certificates(pem)?);
    }
    if settings.accept_invalid_certs {
        tracing::warn!(
            target: KUBERNETES_TARGET,
            url = %settings.url,
            "TLS verification of the Kubernetes API server is disabled (accept_invalid_certs)"
        );
        config.accept_invalid_certs = true;
    }
    Ok(config)
}

/// A client for `settings`. Fails on a bad URL, CA or token file; never connects.
pub fn client(settings: &KubeSettings) -> Result<Client, TopologyError> {
    let builder = ClientBuilder::try_from(config(settings)?)
        .map_err(|e| TopologyError::Config(e.to_string()))?;
    // An inline token wins, as in kube; otherwise the token file, re-read on change.
    let token_file = match (&settings.token, &settings.token_file) {
        (None, Some(path)) => {
            let file = Arc::new(TokenFile::open(path)?);
            Some(MapRequestLayer::new(move |mut request: Request<Body>| {
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, file.authorization());
                request
            }))
        }
        _ => None,
    };
    Ok(builder
        .with_layer(&option_layer(token_file))
        .with_layer(&TimeoutLayer::new(ANSWER_TIMEOUT))
        .with_layer(&MapErrLayer::new(no_answer))
        .build())
}

/// The error of a request the API did not answer in time, saying so.
fn no_answer(error: BoxError) -> BoxError {
    if error.is::<Elapsed>() {
        format!(
            "no answer from the API server within {} s",
            ANSWER_TIMEOUT.as_secs()
        )
        .into()
    } else {
        error
    }
}

/// The DER certificates of a PEM bundle; other PEM sections are skipped.
fn der_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, TopologyError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|cert| cert.map(|der| der.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TopologyError::Config(format!("bad CA PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TopologyError::Config(
            "bad CA PEM: no CERTIFICATE section".into(),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> KubeSettings {
        KubeSettings {
            url: url.into(),
            namespace: "apps".into(),
            selector: "app=web".into(),
            ..KubeSettings::default()
        }
    }

    #[test]
    fn plain_http_url_with_token() {
        let config = config(&KubeSettings {
            token: Some("T".into()),
            ..settings("http://127.0.0.1:8080")
        })
        .unwrap();
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:8080/");
        assert_eq!(config.default_namespace, "apps");
        assert!(config.auth_info.token.is_some());
        assert!(!config.accept_invalid_certs);
        assert!(!config.default_retry, "the watcher's backoff retries");
    }

    #[test]
    fn an_unreadable_token_file_is_a_config_error() {
        let settings = KubeSettings {
            token_file: Some("/nonexistent/swarm/token".into()),
            accept_invalid_certs: true,
            ..settings("https://kubernetes.default.svc:443")
        };
        assert!(config(&settings).unwrap().accept_invalid_certs);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let Err(error) = runtime.block_on(async { client(&settings) }) else {
            panic!("a client without its token file");
        };
        assert!(
            error.to_string().contains("/nonexistent/swarm/token"),
            "{error}"
        );
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in ["", "kubernetes:443", "ftp://host:21", "http://"] {
            let result = config(&settings(url));
            assert!(matches!(result, Err(TopologyError::Config(_))), "{url:?}");
        }
    }

    #[test]
    fn ca_pem_becomes_der() {
        let der = [0x30u8, 0x03, 0x02, 0x01, 0x01];
        let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n\
                   -----BEGIN PRIVATE KEY-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n\
                   -----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            der_certificates(pem.as_bytes()).unwrap(),
            vec![der.to_vec(); 2]
        );
    }

    #[test]
    fn bad_ca_pem_is_a_config_error() {
        for pem in [
            "",
            "not a pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        ] {
            let result = der_certificates(pem.as_bytes());
            assert!(matches!(result, Err(TopologyError::Config(_))), "{pem:?}");
        }
    }
}
