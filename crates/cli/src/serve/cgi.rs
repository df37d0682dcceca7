//! The environment of a `serve --exec` command: the request's facts under
//! the CGI names websocketd gives them (RFC 3875 and its own), so that
//! websocketd programs run unchanged.
//!
//! A command that peers talk to is given nothing else of the server's
//! environment but the variables `--passenv` names (websocketd's rule:
//! secrets in the server's environment stay there). Request headers are
//! given as `HTTP_<NAME>` only, so that no header can set a variable the
//! server sets (`Remote-Addr: 1.2.3.4` is `HTTP_REMOTE_ADDR`, never
//! `REMOTE_ADDR`); a header whose name has a character other than a letter,
//! digit or `-` is left out, since `X_Forwarded_For` would otherwise pass
//! for `X-Forwarded-For` (nginx and Apache drop them too), and so is
//! `Proxy`, which would be `HTTP_PROXY`, the proxy setting of most HTTP
//! clients (httpoxy, CVE-2016-5385). In values, line breaks become spaces
//! and the ends are trimmed, as websocketd does.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicU64, Ordering};

use dialtone::http::Request;
use dialtone::proto::origin::request_host;
use percent_encoding::percent_decode_str;

/// What websocketd calls its interface; programs written for it may look.
const GATEWAY_INTERFACE: &str = "websocketd-CGI/0.1";

/// The variables `--passenv` names by default (websocketd's on Unix).
pub(crate) const DEFAULT_PASSENV: &str = "PATH,DYLD_LIBRARY_PATH,LD_LIBRARY_PATH";

/// Variables of the server's own environment: what `--passenv` lets through.
pub(crate) fn passed(names: &[String]) -> Vec<(OsString, OsString)> {
    names
        .iter()
        .filter(|n| !n.is_empty())
        .filter_map(|n| std::env::var_os(n).map(|v| (OsString::from(n), v)))
        .collect()
}

/// The environment for the command serving one connection: `parent` (the
/// `--passenv` variables), then the request's, then its headers'.
pub(crate) fn environment(
    parent: &[(OsString, OsString)],
    peer: SocketAddr,
    request: &Request<()>,
    tls: bool,
) -> Vec<(OsString, OsString)> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let mut env: Vec<(OsString, OsString)> = parent.to_vec();
    let mut set = |name: &str, value: Vec<u8>| {
        env.push((name.into(), OsString::from_vec(clean(&value))));
    };
    let uri = request.uri();
    let (server_name, server_port) = host_and_port(request, tls);
    let path = decoded_path(uri.path());
    let ip = peer.ip().to_canonical().to_string();
    set(
        "SERVER_SOFTWARE",
        concat!("dialtone/", env!("CARGO_PKG_VERSION")).into(),
    );
    set("REMOTE_ADDR", ip.clone().into());
    set("REMOTE_HOST", ip.into());
    set("REMOTE_PORT", peer.port().to_string().into());
    set("SERVER_NAME", server_name.into());
    set("SERVER_PORT", server_port.into());
    set("SERVER_PROTOCOL", format!("{:?}", request.version()).into());
    set("GATEWAY_INTERFACE", GATEWAY_INTERFACE.into());
    set("REQUEST_METHOD", request.method().as_str().into());
    set("SCRIPT_NAME", "/".into());
    set("PATH_INFO", path.clone());
    set("PATH_TRANSLATED", path);
    set("QUERY_STRING", uri.query().unwrap_or("").into());
    set("REQUEST_URI", uri.to_string().into());
    // Not used here, and set empty so that none can come from elsewhere.
    for name in [
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "REMOTE_IDENT",
        "REMOTE_USER",
    ] {
        set(name, Vec::new());
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    set("UNIQUE_ID", format!("{}-{id}", std::process::id()).into());
    if tls {
        set("HTTPS", "on".into());
    }
    for name in request.headers().keys() {
        let Some(var) = header_variable(name.as_str()) else {
            continue;
        };
        let values: Vec<Vec<u8>> = request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| clean(v.as_bytes()))
            .collect();
        env.push((var.into(), OsString::from_vec(values.join(&b", "[..]))));
    }
    env
}

/// `HTTP_` and the header's name upper-cased with `-` as `_`; none for a
/// name that could pass for another (see the module docs) or for `Proxy`.
fn header_variable(name: &str) -> Option<String> {
    if name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || name.eq_ignore_ascii_case("proxy")
    {
        return None;
    }
    Some(format!(
        "HTTP_{}",
        name.to_ascii_uppercase().replace('-', "_")
    ))
}

/// A value with CR, LF (and NUL, which no environment can hold) as
/// spaces and its ends trimmed.
fn clean(value: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = value
        .iter()
        .map(|&b| {
            if matches!(b, b'\r' | b'\n' | 0) {
                b' '
            } else {
                b
            }
        })
        .collect();
    spaced.trim_ascii().to_vec()
}

/// The path percent-decoded (as websocketd's `PATH_INFO`); left as sent
/// if decoding would make a NUL.
fn decoded_path(path: &str) -> Vec<u8> {
    let decoded: Vec<u8> = percent_decode_str(path).collect();
    if decoded.contains(&0) {
        path.as_bytes().to_vec()
    } else {
        decoded
    }
}

/// `SERVER_NAME` and `SERVER_PORT` from the host the client sent the
/// request to (`Host`, or `:authority` on HTTP/2; the port being the
/// scheme's default when it has none).
fn host_and_port(request: &Request<()>, tls: bool) -> (String, String) {
    let default = if tls { "443" } else { "80" };
    let host = request_host(request).unwrap_or("").trim();
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, rest)) => (format!("[{addr}]"), rest.strip_prefix(':')),
            None => (host.to_owned(), None),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (host.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.to_owned(),
        _ => default.to_owned(),
    };
    (name, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(request: Request<()>, tls: bool) -> HashMap<String, String> {
        let peer: SocketAddr = "127.0.0.7:4321".parse().unwrap();
        environment(&[("PATH".into(), "/bin".into())], peer, &request, tls)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }

    #[test]
    fn the_request_is_described_with_websocketds_names() {
        let request = Request::get("/chat/r%C3%A9sum%C3%A9?a=1&b=%20")
            .header("host", "example.com:9001")
            .header("origin", "http://example.com:9001")
            .body(())
            .unwrap();
        let env = env_of(request, false);
        let expect = [
            ("PATH", "/bin"),
            ("REMOTE_ADDR", "127.0.0.7"),
            ("REMOTE_PORT", "4321"),
            ("SERVER_NAME", "example.com"),
            ("SERVER_PORT", "9001"),
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", "/"),
            ("PATH_INFO", "/chat/résumé"),
            ("QUERY_STRING", "a=1&b=%20"),
            ("REQUEST_URI", "/chat/r%C3%A9sum%C3%A9?a=1&b=%20"),
            ("HTTP_ORIGIN", "http://example.com:9001"),
            ("HTTP_HOST", "example.com:9001"),
            ("GATEWAY_INTERFACE", GATEWAY_INTERFACE),
            ("REMOTE_USER", ""),
        ];
        for (name, value) in expect {
            assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
        }
        assert!(!env.contains_key("HTTPS"));
    }

    #[test]
    fn server_port_defaults_to_the_schemes_and_https_is_said() {
        let request = Request::get("/").header("host", "[::1]").body(()).unwrap();
        let env = env_of(request, true);
        assert_eq!(env["SERVER_NAME"], "[::1]");
        assert_eq!(env["SERVER_PORT"], "443");
        assert_eq!(env["HTTPS"], "on");
    }

    #[test]
    fn on_http2_the_server_name_is_the_authority() {
        // An extended CONNECT (RFC 8441) has `:authority` and no `Host`.
        let request = Request::connect("https://example.com:8443/chat")
            .body(())
            .unwrap();
        let env = env_of(request, true);
        assert_eq!(env["SERVER_NAME"], "example.com");
        assert_eq!(env["SERVER_PORT"], "8443");
    }

    #[test]
    fn headers_cannot_set_the_servers_variables() {
        let request = Request::get("/real?q=real")
            .header("host", "127.0.0.1:9001")
            .header("remote-addr", "6.6.6.6")
            .header("query_string", "fake")
            .header("x_forwarded_for", "6.6.6.6")
            .header("x-forwarded-for", "10.0.0.1")
            .header("proxy", "http://evil.example:3128")
            .header("x-two", "a")
            .header("x-two", "b")
            .body(())
            .unwrap();
        let env = env_of(request, false);
        assert_eq!(env["REMOTE_ADDR"], "127.0.0.7");
        assert_eq!(env["QUERY_STRING"], "q=real");
        assert_eq!(env["HTTP_REMOTE_ADDR"], "6.6.6.6");
        // `X_Forwarded_For` would be the same variable: it is left out.
        assert_eq!(env["HTTP_X_FORWARDED_FOR"], "10.0.0.1");
        assert!(!env.contains_key("HTTP_QUERY_STRING"));
        assert!(!env.contains_key("HTTP_PROXY"), "httpoxy");
        assert_eq!(env["HTTP_X_TWO"], "a, b");
        let names_from_headers = env.keys().filter(|k| k.starts_with("HTTP_")).count();
        assert_eq!(names_from_headers, 4, "{env:?}");
    }

    #[test]
    fn values_lose_line_breaks_and_nuls_and_paths_keep_an_encoded_nul() {
        assert_eq!(clean(b"  a\r\nb\0c \t"), b"a  b c");
        assert_eq!(decoded_path("/a%00b"), b"/a%00b");
        assert_eq!(decoded_path("/a%0Ab"), b"/a\nb");
        // In the environment the line break is a space, as in a header.
        let request = Request::get("/a%0Ab").header("host", "h").body(()).unwrap();
        assert_eq!(env_of(request, false)["PATH_INFO"], "/a b");
    }

    #[test]
    fn passenv_takes_only_the_named_variables_that_are_set() {
        let got = passed(&["PATH".into(), "DIALTONE_SURELY_UNSET_VARIABLE".into()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "PATH");
    }
}
