//! `serve --tls-self-signed`: a certificate made at start-up for local
//! work, so that `wss://` needs no `openssl` incantation.
//!
//! It is a CA and a leaf signed by it, not one self-signed certificate:
//! rustls (and webpki) refuse a CA certificate used as the server's own
//! (`CaUsedAsEndEntity`), and a leaf cannot be a trust anchor for most
//! clients, so the CA is what the client trusts (`--cacert`) and the leaf
//! is what the server presents. Both are valid for a week, the CA's key is
//! dropped once the leaf is signed, and the PEM files live in a directory
//! of their own under the system's temp dir.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use dialtone::ServerTls;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// How long the certificates are valid.
const VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The certificate made for this run.
pub(crate) struct SelfSigned {
    /// The leaf (first) and the CA, PEM, as the server sends them.
    chain_pem: String,
    key_pem: String,
    /// The CA certificate a client trusts.
    ca_file: PathBuf,
    /// What the leaf is valid for, in words.
    names: String,
    /// SHA-256 of the leaf's DER, hex with colons (as browsers show it).
    fingerprint: String,
    /// SHA-256 of the key's SubjectPublicKeyInfo, in base64: what
    /// Chromium's `--ignore-certificate-errors-spki-list` takes.
    spki: String,
}

/// Makes the CA and the leaf for `bound` (and the loopback names), and
/// writes the CA, the chain and the key to a fresh temp directory.
pub(crate) fn make(bound: SocketAddr) -> Result<SelfSigned> {
    let now = std::time::SystemTime::now();
    let not_before = now
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or(now)
        .into();
    let not_after = (now + VALIDITY).into();

    let ca_key = KeyPair::generate().context("making the CA key")?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "dialtone serve --tls-self-signed CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).context("making the CA")?;

    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    if !bound.ip().is_unspecified() && !ips.contains(&bound.ip()) {
        ips.push(bound.ip());
    }
    let leaf_key = KeyPair::generate().context("making the key")?;
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::DnsName(
        "localhost".try_into().context("the name localhost")?,
    )];
    let names = std::iter::once("localhost".to_owned())
        .chain(ips.iter().map(IpAddr::to_string))
        .collect::<Vec<_>>()
        .join(", ");
    leaf.subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .context("signing the certificate")?;

    let digest = ring::digest::digest(&ring::digest::SHA256, leaf_cert.der());
    let mut fingerprint = String::new();
    for (i, b) in digest.as_ref().iter().enumerate() {
        let sep = if i == 0 { "" } else { ":" };
        let _ = write!(fingerprint, "{sep}{b:02X}");
    }

    let spki_digest = ring::digest::digest(&ring::digest::SHA256, &leaf_key.public_key_der());
    let spki = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(spki_digest.as_ref())
    };

    let dir = std::env::temp_dir().join(format!("dialtone-self-signed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let chain_pem = format!("{}{}", leaf_cert.pem(), ca_cert.pem());
    let key_pem = leaf_key.serialize_pem();
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let ca_file = write("ca.pem", &ca_cert.pem())?;
    write("cert.pem", &chain_pem)?;
    let key_file = write("key.pem", &key_pem)?;
    restrict(&key_file);
    Ok(SelfSigned {
        chain_pem,
        key_pem,
        ca_file,
        names,
        fingerprint,
        spki,
    })
}

/// Only we may read the key file.
fn restrict(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

impl SelfSigned {
    pub(crate) fn server_tls(&self) -> Result<ServerTls> {
        Ok(ServerTls::from_pem(
            self.chain_pem.as_bytes(),
            self.key_pem.as_bytes(),
        )?)
    }

    /// Removes the directory of the PEM files (at exit: the key is of no
    /// use to anyone once this process is gone).
    pub(crate) fn remove_files(&self) {
        if let Some(dir) = self.ca_file.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Tells the user what to trust and how to dial, on stderr beside the
    /// "listening on" line.
    pub(crate) fn announce(&self, local: SocketAddr) {
        let host = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        eprintln!(
            "self-signed certificate for {}, valid 7 days\n\
             \x20 SHA-256 fingerprint: {}\n\
             \x20 SPKI SHA-256 (base64): {}\n\
             \x20 CA to trust: {} (cert.pem and key.pem beside it)\n\
             dial it with:\n\
             \x20 dialtone dial --cacert {} wss://{host}:{}/",
            self.names,
            self.fingerprint,
            self.spki,
            self.ca_file.display(),
            self.ca_file.display(),
            local.port(),
        );
    }
}
