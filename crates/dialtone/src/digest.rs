//! HTTP Digest authentication (RFC 7616), the client's half, sans I/O: pick
//! the best `Digest` challenge of a 401's `WWW-Authenticate` headers and
//! compute the `Authorization` that answers it.
//!
//! Supported: `MD5` and `SHA-256`, their `-sess` variants, `qop=auth` (and
//! `auth-int`, whose entity body is the handshake's empty one), and the RFC
//! 2069 form without `qop`. `SHA-512-256` challenges are skipped (no crate
//! of ours has it); `userhash` is not used (the user name is sent, as the
//! RFC allows); a user name that is not plain ASCII goes as `username*`
//! (RFC 8187).

use std::fmt::Write as _;

use dialtone_proto::http::HeaderMap;
use md5::Md5;
use sha2::{Digest as _, Sha256};

/// The hash a challenge asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Algorithm> {
        [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, a)| a)
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// The hash of `data`, lower-case hex.
    fn hex(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 | Algorithm::Sha256Sess => Sha256::digest(data.as_bytes()).to_vec(),
        };
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// Quality of protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Qop {
    Auth,
    AuthInt,
}

/// A `Digest` challenge we can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: Algorithm,
    qop: Option<Qop>,
    /// The nonce was too old, not the credentials wrong (RFC 7616 §3.3):
    /// worth answering once more, with the new nonce.
    pub(crate) stale: bool,
}

/// The best `Digest` challenge in `headers`' `WWW-Authenticate` lines (the
/// strongest algorithm; a server may offer several), if any we support.
pub(crate) fn challenge(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenges)
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("digest"))
        .filter_map(|(_, params)| Challenge::from_params(&params))
        .max_by_key(|c| c.algorithm)
}

impl Challenge {
    fn from_params(params: &[(String, String)]) -> Option<Challenge> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(name) => Algorithm::parse(name)?,
        };
        let qop = match get("qop") {
            None => None,
            Some(list) => {
                let offered: Vec<&str> = list.split(',').map(str::trim).collect();
                if offered.iter().any(|q| q.eq_ignore_ascii_case("auth")) {
                    Some(Qop::Auth)
                } else if offered.iter().any(|q| q.eq_ignore_ascii_case("auth-int")) {
                    Some(Qop::AuthInt)
                } else {
                    return None;
                }
            }
        };
        Some(Challenge {
            realm: get("realm")?.to_owned(),
            nonce: get("nonce")?.to_owned(),
            opaque: get("opaque").map(str::to_owned),
            algorithm,
            qop,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The `Authorization` value answering this challenge for a `GET` of
    /// `uri` (the request target), with client nonce `cnonce` and nonce
    /// count 1 (each answer is the first use of its nonce).
    pub(crate) fn authorization(
        &self,
        user: &str,
        password: &str,
        uri: &str,
        cnonce: &str,
    ) -> String {
        let h = |s: &str| self.algorithm.hex(s);
        let nc = "00000001";
        let mut ha1 = h(&format!("{user}:{}:{password}", self.realm));
        if self.algorithm.sess() {
            ha1 = h(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = match self.qop {
            Some(Qop::AuthInt) => h(&format!("GET:{uri}:{}", h(""))),
            _ => h(&format!("GET:{uri}")),
        };
        let response = match self.qop {
            Some(qop) => {
                let qop = qop_name(qop);
                h(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce))
            }
            None => h(&format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        let mut out = String::from("Digest ");
        if user.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            let _ = write!(out, "username={}", quote(user));
        } else {
            let encoded = percent_encoding::utf8_percent_encode(user, ATTR_CHAR);
            let _ = write!(out, "username*=UTF-8''{encoded}");
        }
        let _ = write!(
            out,
            ", realm={}, nonce={}, uri={}, algorithm={}, response=\"{response}\"",
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            self.algorithm.name()
        );
        if let Some(qop) = self.qop {
            let _ = write!(
                out,
                ", qop={}, nc={nc}, cnonce={}",
                qop_name(qop),
                quote(cnonce)
            );
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque={}", quote(opaque));
        }
        out
    }
}

fn qop_name(qop: Qop) -> &'static str {
    match qop {
        Qop::Auth => "auth",
        Qop::AuthInt => "auth-int",
    }
}

/// What RFC 8187's `attr-char` leaves unencoded.
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `s` as an HTTP quoted-string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The challenges of one `WWW-Authenticate` value (RFC 9110 §11.6.1):
/// `scheme [token68 | param *("," param)]`, challenges separated by
/// commas too. A list element with `=` after its first token is a
/// parameter of the challenge before it; any other starts a challenge.
fn challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for element in split_list(value) {
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        let param_start = element.find(['=', ' ', '\t']);
        let is_param = param_start.is_some_and(|i| element[i..].trim_start().starts_with('='));
        if is_param {
            if let (Some(last), Some(param)) = (out.last_mut(), param(element)) {
                last.1.push(param);
            }
            continue;
        }
        let (scheme, rest) = match element.split_once([' ', '\t']) {
            Some((s, r)) => (s, r.trim()),
            None => (element, ""),
        };
        let mut params = Vec::new();
        // The rest is the first parameter. A token68 (`Negotiate abc==`)
        // may pass for one too: harmless, as only Digest's are read.
        if let Some(p) = param(rest) {
            params.push(p);
        }
        out.push((scheme.to_owned(), params));
    }
    out
}

/// `name = (token | quoted-string)`, unquoted.
fn param(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || name.contains([' ', '\t', '"']) {
        return None;
    }
    let value = value.trim();
    let value = match value.strip_prefix('"') {
        Some(quoted) => {
            let mut out = String::new();
            let mut chars = quoted.chars();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => out.push(chars.next()?),
                    c => out.push(c),
                }
            }
            out
        }
        None => value.to_owned(),
    };
    Some((name.to_owned(), value))
}

/// Splits at the commas outside quoted strings.
fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("www-authenticate", l.parse().unwrap());
        }
        h
    }

    /// RFC 7616 §3.9.1: the server offers SHA-256 and MD5 in two headers.
    const RFC_SHA256: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const RFC_MD5: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn response_of(authorization: &str) -> &str {
        let start = authorization.find("response=\"").unwrap() + 10;
        &authorization[start..start + authorization[start..].find('"').unwrap()]
    }

    #[test]
    fn rfc7616_example_md5() {
        let c = challenge(&headers(&[RFC_MD5])).unwrap();
        let a = c.authorization("Mufasa", "Circle of Life", "/dir/index.html", RFC_CNONCE);
        assert_eq!(response_of(&a), "8ca523f5e9506fed4657c9700eebdbec");
        assert!(a.starts_with("Digest username=\"Mufasa\", realm=\"http-auth@example.org\", nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", uri=\"/dir/index.html\", algorithm=MD5, "), "{a}");
        assert!(a.ends_with(", qop=auth, nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""), "{a}");
    }

    #[test]
    fn rfc7616_example_sha256_is_preferred_to_md5() {
        let c = challenge(&headers(&[RFC_MD5, RFC_SHA256])).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let a = c.authorization("Mufasa", "Circle of Life", "/dir/index.html", RFC_CNONCE);
        assert_eq!(
            response_of(&a),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(a.contains("algorithm=SHA-256"), "{a}");
    }

    #[test]
    fn rfc2617_example_and_rfc2069_without_qop() {
        // RFC 2617 §3.5 (MD5 and qop=auth, nc 1).
        let c = challenge(&headers(&["Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""])).unwrap();
        let a = c.authorization("Mufasa", "Circle Of Life", "/dir/index.html", "0a4f113b");
        assert_eq!(response_of(&a), "6629fae49393a05397450978507c4ef1");
        // Without qop: H(HA1:nonce:HA2), and no nc or cnonce sent.
        let c = challenge(&headers(&[
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
        ]))
        .unwrap();
        let a = c.authorization("Mufasa", "Circle Of Life", "/dir/index.html", "x");
        let ha1 = Algorithm::Md5.hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = Algorithm::Md5.hex("GET:/dir/index.html");
        let want = Algorithm::Md5.hex(&format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}"));
        assert_eq!(response_of(&a), want);
        assert!(!a.contains("nc=") && !a.contains("cnonce"), "{a}");
    }

    #[test]
    fn sess_variant_hashes_the_nonces_into_ha1() {
        let c = challenge(&headers(&[
            "Digest realm=\"r\", nonce=\"n\", qop=auth, algorithm=MD5-sess",
        ]))
        .unwrap();
        let a = c.authorization("u", "p", "/", "c");
        let ha1 = Algorithm::Md5.hex(&format!("{}:n:c", Algorithm::Md5.hex("u:r:p")));
        let ha2 = Algorithm::Md5.hex("GET:/");
        let want = Algorithm::Md5.hex(&format!("{ha1}:n:00000001:c:auth:{ha2}"));
        assert_eq!(response_of(&a), want);
        assert!(a.contains("algorithm=MD5-sess"));
    }

    #[test]
    fn finds_digest_among_other_schemes_on_one_line_and_reads_stale() {
        let c = challenge(&headers(&[
            "Basic realm=\"a, b\", Digest realm=\"r\", nonce=\"n2\", stale=TRUE, qop=\"auth\", Bearer",
        ]))
        .unwrap();
        assert_eq!((c.realm.as_str(), c.nonce.as_str()), ("r", "n2"));
        assert!(c.stale);
        assert_eq!(c.qop, Some(Qop::Auth));
    }

    #[test]
    fn unsupported_or_incomplete_challenges_are_not_answered() {
        for line in [
            "Basic realm=\"x\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-conf\"",
            "Digest realm=\"r\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"unterminated, nonce=\"n\"",
            "",
        ] {
            assert_eq!(challenge(&headers(&[line])), None, "{line}");
        }
    }

    #[test]
    fn user_names_are_quoted_or_encoded() {
        let c = challenge(&headers(&["Digest realm=\"r\", nonce=\"n\""])).unwrap();
        assert!(c
            .authorization("a\"b", "p", "/", "c")
            .starts_with("Digest username=\"a\\\"b\", "));
        assert!(c
            .authorization("J\u{e4}s\u{f8}n Doe", "p", "/", "c")
            .starts_with("Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, "));
    }
}
