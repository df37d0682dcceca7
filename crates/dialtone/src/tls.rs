//! TLS for `wss://` (dialing) and for the [`Listener`]
//! (accepting), with [`rustls`] and its `ring` crypto provider.
//!
//! Dialing verifies the server's certificate chain and host name by default,
//! against the Mozilla root store compiled in by [`webpki_roots`], plus any
//! extra CA certificates given to the [`Dialer`](crate::Dialer)
//! ([`Dialer::add_ca_pem`](crate::Dialer::add_ca_pem),
//! [`Dialer::add_ca_file`](crate::Dialer::add_ca_file)).
//!
//! Why `webpki-roots` rather than the platform's store (`rustls-native-certs`):
//! the same roots on every machine, nothing read from disk at dial time, and
//! it works in minimal containers that ship no `ca-certificates`; a private
//! or corporate CA is one `add_ca_file` away. The cost is that the roots are
//! those of the dialtone build, not the system's; a program that must follow
//! the system store can load it and pass it with
//! [`Dialer::tls_config`](crate::Dialer::tls_config).
//!
//! Both sides offer ALPN `http/1.1`, the protocol a WebSocket handshake is;
//! with the `http2` feature, the dialer also offers `h2` first on the
//! dials that may speak RFC 8441 (`Dialer::http2`).
//!
#![cfg_attr(not(feature = "tokio"), doc = "[`Listener`]: crate#feature-flags")]
#![cfg_attr(feature = "tokio", doc = "[`Listener`]: crate::Listener")]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
#[cfg(feature = "tokio")]
use tokio::net::TcpStream;

#[cfg(feature = "blocking")]
use crate::blocking_transport::{is_timeout, Deadline};
use crate::error::{Error, Result};

/// The rustls version dialtone is built with, for
/// [`Dialer::tls_config`](crate::Dialer::tls_config) and
/// [`ServerTls::from_config`].
pub use rustls;

const ALPN_HTTP11: &[u8] = b"http/1.1";

/// ALPN for HTTP/2 over TLS (RFC 9113 §3.2).
pub(crate) const ALPN_H2: &[u8] = b"h2";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(what: impl fmt::Display) -> Error {
    Error::TlsConfig(what.to_string())
}

/// PEM text, in memory or in a file read when it is needed.
#[derive(Clone)]
pub(crate) enum Pem {
    File(PathBuf),
    Bytes(Arc<[u8]>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => write!(f, "File({})", path.display()),
            // It may be a private key: show only its size.
            Pem::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
}

impl Pem {
    fn load(&self) -> Result<(Arc<[u8]>, String)> {
        match self {
            Pem::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| config_error(format_args!("{}: {e}", path.display())))?;
                Ok((bytes.into(), path.display().to_string()))
            }
            Pem::Bytes(bytes) => Ok((bytes.clone(), "PEM data".to_owned())),
        }
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>> {
        let (bytes, name) = self.load()?;
        certificates(&bytes, &name)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>> {
        let (bytes, name) = self.load()?;
        private_key(&bytes, &name)
    }
}

fn certificates(pem: &[u8], name: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| config_error(format_args!("{name}: {e}")))?;
    if certs.is_empty() {
        return Err(config_error(format_args!("{name}: no CERTIFICATE in it")));
    }
    Ok(certs)
}

fn private_key(pem: &[u8], name: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| config_error(format_args!("{name}: no usable private key: {e}")))
}

fn root_store(certs: Vec<CertificateDer<'static>>, name: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| config_error(format_args!("{name}: bad CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The dialer's TLS options; the rustls config is built at the first
/// `wss://` dial and kept (clones of the dialer share it).
#[derive(Clone, Default)]
pub(crate) struct ClientTls {
    pub(crate) extra_roots: Vec<Pem>,
    pub(crate) no_built_in_roots: bool,
    pub(crate) identity: Option<(Pem, Pem)>,
    pub(crate) server_name: Option<String>,
    pub(crate) accept_invalid_certs: bool,
    pub(crate) custom: Option<Arc<ClientConfig>>,
    cache: Arc<OnceLock<Arc<ClientConfig>>>,
    /// The same config offering `h2` before `http/1.1`.
    cache_h2: Arc<OnceLock<Arc<ClientConfig>>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("extra_roots", &self.extra_roots)
            .field("built_in_roots", &!self.no_built_in_roots)
            .field("client_cert", &self.identity.as_ref().map(|(cert, _)| cert))
            .field("server_name", &self.server_name)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("custom_config", &self.custom.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Call after changing an option: the next dial builds a new config.
    pub(crate) fn changed(&mut self) {
        self.cache = Arc::default();
        self.cache_h2 = Arc::default();
    }

    /// The rustls client config these options make, offering ALPN `h2`
    /// too if `h2`.
    pub(crate) fn config(&self, h2: bool) -> Result<Arc<ClientConfig>> {
        if let Some(custom) = &self.custom {
            return Ok(custom.clone());
        }
        let cache = if h2 { &self.cache_h2 } else { &self.cache };
        if let Some(config) = cache.get() {
            return Ok(config.clone());
        }
        let mut config = self.build()?;
        if h2 {
            config.alpn_protocols.insert(0, ALPN_H2.to_vec());
        }
        let config = Arc::new(config);
        // A racing dial may have set it first; either config is the same.
        let _ = cache.set(config.clone());
        Ok(config)
    }

    fn build(&self) -> Result<ClientConfig> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = if self.accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            if !self.no_built_in_roots {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            for pem in &self.extra_roots {
                let (bytes, name) = pem.load()?;
                roots
                    .roots
                    .extend(root_store(certificates(&bytes, &name)?, &name)?.roots);
            }
            if roots.is_empty() {
                return Err(config_error(
                    "no trusted roots: built-in roots are off and no CA certificate was added",
                ));
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(cert.certificates()?, key.private_key()?)
                .map_err(|e| config_error(format_args!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(config)
    }

    /// The config and the name to check the certificate against, for a
    /// dial of `host` (or the server name override).
    fn prepare(
        &self,
        host: &str,
        h2: bool,
    ) -> Result<(Arc<ClientConfig>, ServerName<'static>, String)> {
        let config = self.config(h2)?;
        if self.accept_invalid_certs && self.custom.is_none() {
            tracing::warn!(
                "TLS certificate verification is OFF for {host} (danger_accept_invalid_certs)"
            );
        }
        let name = self.server_name.as_deref().unwrap_or(host).to_owned();
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| config_error(format_args!("server name {name:?}: {e}")))?;
        Ok((config, server_name, name))
    }

    /// Runs the TLS handshake over `tcp`, checking the certificate against
    /// `host` (or the server name override), offering ALPN `h2` too if `h2`.
    #[cfg(feature = "tokio")]
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        h2: bool,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let (config, server_name, name) = self.prepare(host, h2)?;
        tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| tls_error(&name, e, Checked::Server))
    }

    /// [`ClientTls::connect`] over a blocking TCP stream, before the
    /// deadline, with the same options.
    #[cfg(feature = "blocking")]
    pub(crate) fn connect_blocking(
        &self,
        mut tcp: std::net::TcpStream,
        host: &str,
        deadline: Deadline,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
        let (config, server_name, name) = self.prepare(host, false)?;
        let mut conn = rustls::ClientConnection::new(config, server_name)
            .map_err(|e| config_error(format_args!("TLS client for {name}: {e}")))?;
        while conn.is_handshaking() {
            let left = deadline.left()?;
            tcp.set_read_timeout(Some(left))?;
            tcp.set_write_timeout(Some(left))?;
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(if is_timeout(&e) {
                    deadline.error()
                } else {
                    tls_error(&name, e, Checked::Server)
                });
            }
        }
        Ok(rustls::StreamOwned::new(conn, tcp))
    }
}

/// Whose certificate a TLS handshake checks: the server's when we dial,
/// a client's when a listener asks for one. The advice differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// We dialed; the server's certificate was checked.
    Server,
    /// We accepted; the client's certificate was checked (the async
    /// listener only).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Client,
}

/// An I/O error from a TLS handshake as [`Error::Tls`], keeping the rustls
/// error (certificate expired, name mismatch, unknown issuer, alert, …) in
/// `source`, and in `reason` what rustls said followed by the cause in
/// words and the fix, when we know them ([`advice`]).
pub(crate) fn tls_error(host: &str, e: std::io::Error, checked: Checked) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls_error) => {
            let mut reason = rustls_error.to_string();
            if let Some(words) = advice(rustls_error, host, checked) {
                reason = format!("{reason}: {words}");
            }
            Error::Tls {
                host: host.to_owned(),
                reason,
                source: Some(rustls_error.clone()),
            }
        }
        None => Error::Tls {
            host: host.to_owned(),
            reason: format!("connection lost during the TLS handshake: {e}"),
            source: None,
        },
    }
}

/// What a certificate error means and how to fix it, for the errors people
/// meet when they set up TLS (rustls's own text names the check, not the
/// cause). `host` is the name dialed.
pub(crate) fn advice(e: &rustls::Error, host: &str, checked: Checked) -> Option<String> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(e) = e else {
        return None;
    };
    let (whose, trusting, trust) = match checked {
        Checked::Server => (
            "the server's",
            "this client",
            "trust that CA (`dialtone dial --cacert ca.pem`, `Dialer::add_ca_file`)",
        ),
        Checked::Client => (
            "the client's",
            "this listener",
            "give the listener that CA (`ServerTls::require_client_cert_pem`)",
        ),
    };
    let words = match e {
        // webpki's error is not exported by rustls; its text is its name.
        C::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => format!(
            "this certificate is a CA certificate (basicConstraints CA:TRUE, what a plain \
             `openssl req -x509` makes) used as {whose} own certificate, which TLS does not \
             allow; serve a leaf certificate signed by it instead (basicConstraints CA:FALSE, \
             subjectAltName with the host name), and {trust}; for local work \
             `dialtone serve --tls-self-signed` makes such a pair and prints the line to dial it"
        ),
        C::UnknownIssuer => format!(
            "{whose} certificate was not issued by a CA {trusting} trusts; if it is your own \
             or a private CA, {trust}; if it is a public one, the peer must send its \
             intermediate certificates too (the chain file: leaf first, then intermediates)"
        ),
        C::NotValidForName => format!(
            "{whose} certificate is not valid for the name {host:?}: its subjectAltName does \
             not list it; dial a name it lists, or make a certificate for {host:?}"
        ),
        C::NotValidForNameContext {
            expected,
            presented,
        } => {
            let listed = if presented.is_empty() {
                "no names at all".to_owned()
            } else {
                presented.join(", ")
            };
            format!(
                "{whose} certificate is not valid for {:?}: it is for {listed}; dial one of \
                 those names, or make a certificate whose subjectAltName has {:?}",
                expected.to_str(),
                expected.to_str()
            )
        }
        C::Expired | C::ExpiredContext { .. } => format!(
            "{whose} certificate has expired; renew it (or, if it should still be valid, \
             check this machine's clock)"
        ),
        C::NotValidYet | C::NotValidYetContext { .. } => format!(
            "{whose} certificate is not valid yet; check this machine's clock (and that of \
             the machine that made it)"
        ),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => format!(
            "{whose} certificate is not made for this use: its extendedKeyUsage must include \
             {}",
            match checked {
                Checked::Server => "serverAuth",
                Checked::Client => "clientAuth",
            }
        ),
        _ => return None,
    };
    Some(words)
}

/// Accepts any server certificate, still checking that the server holds its
/// key (the handshake signatures). For tests only.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A listener's TLS identity: certificate chain and private key, and
/// optionally the CAs whose client certificates it requires.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// use dialtone::tls::ServerTls;
///
/// let tls = ServerTls::from_pem_files("cert.pem", "key.pem")?;
/// let listener = dialtone::Listener::bind("127.0.0.1:9443").await?.with_tls(tls);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field(
                "certificates",
                &self.identity.as_ref().map(|(chain, _)| chain.len()),
            )
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From PEM: the certificate chain (leaf first) and the private key
    /// (PKCS#8, PKCS#1 or SEC1). Fails if the key does not match the
    /// certificate.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self> {
        let chain = certificates(cert_chain, "certificate chain")?;
        let key = private_key(key, "private key")?;
        Self::build(chain, key, None)
    }

    /// From PEM files: the certificate chain (leaf first) and the private key.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let chain = Pem::File(cert_chain.as_ref().to_owned()).certificates()?;
        let key = Pem::File(key.as_ref().to_owned()).private_key()?;
        Self::build(chain, key, None)
    }

    /// From a rustls config built by the caller (its ALPN is left as is).
    pub fn from_config(config: Arc<ServerConfig>) -> Self {
        ServerTls {
            config,
            identity: None,
        }
    }

    /// Requires clients to present a certificate issued by one of the CAs in
    /// `ca_pem`; a client without one fails the TLS handshake. Not available
    /// for [`ServerTls::from_config`] (set a verifier in the config instead).
    pub fn require_client_cert_pem(self, ca_pem: &[u8]) -> Result<Self> {
        let Some((chain, key)) = self.identity else {
            return Err(config_error(
                "require_client_cert_pem needs a ServerTls made from PEM, not from_config",
            ));
        };
        let roots = root_store(certificates(ca_pem, "client CA")?, "client CA")?;
        Self::build(chain, key.clone_key(), Some(roots))
    }

    /// The rustls config in use.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_roots: Option<RootCertStore>,
    ) -> Result<Self> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = match client_roots {
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| config_error(format_args!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| config_error(format_args!("certificate and key: {e}")))?;
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            identity: Some((chain, Arc::new(key))),
        })
    }

    /// The same identity offering ALPN `h2` before `http/1.1`, if its ALPN
    /// is ours (`http/1.1` alone); a caller's config is left as it is.
    #[cfg(feature = "http2-server")]
    pub(crate) fn offering_h2(self) -> Self {
        if self.identity.is_none() || self.config.alpn_protocols != [ALPN_HTTP11.to_vec()] {
            return self;
        }
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![crate::h2_listener::ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        ServerTls {
            config: Arc::new(config),
            identity: self.identity,
        }
    }

    /// Runs the server side of the TLS handshake.
    #[cfg(feature = "tokio")]
    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
    ) -> Result<tokio_rustls::server::TlsStream<TcpStream>> {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
            .accept(tcp)
            .await
            .map_err(|e| tls_error(&peer.to_string(), e, Checked::Client))
    }
}
