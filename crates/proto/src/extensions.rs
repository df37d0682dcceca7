//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1): a list
//! of extensions, each a token with `;`-separated parameters. Any extension
//! is parsed here; what permessage-deflate makes of its parameters is
//! [`deflate`](crate::deflate)'s.

use std::fmt;

use http::header::{self, HeaderMap};

/// One element of a `Sec-WebSocket-Extensions` header: a name and its
/// parameters, values unquoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// `(name, value)` pairs in order; a parameter without `=` has no value.
    pub params: Vec<(String, Option<String>)>,
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, "; {name}={v}")?,
                None => write!(f, "; {name}")?,
            }
        }
        Ok(())
    }
}

/// The header could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionSyntaxError;

impl fmt::Display for ExtensionSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed Sec-WebSocket-Extensions header")
    }
}

impl std::error::Error for ExtensionSyntaxError {}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses a `Sec-WebSocket-Extensions` value (all its lines joined with
/// commas): `extension *( "," extension )`, `extension = token *( ";"
/// token [ "=" ( token / quoted-string ) ] )`. A quoted value must unquote
/// to a token (RFC 6455 §9.1).
pub fn parse_extensions(value: &str) -> Result<Vec<Extension>, ExtensionSyntaxError> {
    struct Cursor<'a> {
        s: &'a [u8],
        i: usize,
    }
    impl Cursor<'_> {
        fn ows(&mut self) {
            while self.i < self.s.len() && (self.s[self.i] == b' ' || self.s[self.i] == b'\t') {
                self.i += 1;
            }
        }
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn token(&mut self) -> Result<String, ExtensionSyntaxError> {
            let start = self.i;
            while self.i < self.s.len() && is_tchar(self.s[self.i]) {
                self.i += 1;
            }
            if start == self.i {
                return Err(ExtensionSyntaxError);
            }
            Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
        }
        fn quoted(&mut self) -> Result<String, ExtensionSyntaxError> {
            self.i += 1; // opening quote
            let mut out = Vec::new();
            loop {
                match self.peek() {
                    None => return Err(ExtensionSyntaxError),
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let c = *self.s.get(self.i + 1).ok_or(ExtensionSyntaxError)?;
                        out.push(c);
                        self.i += 2;
                    }
                    Some(c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
            if out.is_empty() || !out.iter().all(|&c| is_tchar(c)) {
                return Err(ExtensionSyntaxError);
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }

    let mut c = Cursor {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        c.ows();
        // Empty list elements (", ,") are allowed by RFC 7230 §7.
        if c.peek() == Some(b',') {
            c.i += 1;
            continue;
        }
        if c.peek().is_none() {
            break;
        }
        let name = c.token()?;
        let mut params = Vec::new();
        loop {
            c.ows();
            match c.peek() {
                Some(b';') => {
                    c.i += 1;
                    c.ows();
                    let pname = c.token()?;
                    c.ows();
                    let value = if c.peek() == Some(b'=') {
                        c.i += 1;
                        c.ows();
                        Some(if c.peek() == Some(b'"') {
                            c.quoted()?
                        } else {
                            c.token()?
                        })
                    } else {
                        None
                    };
                    params.push((pname, value));
                }
                Some(b',') => {
                    c.i += 1;
                    break;
                }
                None => break,
                Some(_) => return Err(ExtensionSyntaxError),
            }
        }
        out.push(Extension { name, params });
    }
    Ok(out)
}

/// Every `Sec-WebSocket-Extensions` line of `headers`, joined, parsed.
pub fn from_headers(headers: &HeaderMap) -> Result<Vec<Extension>, ExtensionSyntaxError> {
    let mut joined = String::new();
    for v in headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS) {
        let v = v.to_str().map_err(|_| ExtensionSyntaxError)?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(v);
    }
    parse_extensions(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_offers_with_quoted_values() {
        let v = parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\" , permessage-deflate,x-foo;a=b",
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0].params,
            [
                ("client_max_window_bits".into(), None),
                ("server_max_window_bits".into(), Some("10".into()))
            ]
        );
        assert!(v[1].params.is_empty());
        assert_eq!(v[2].name, "x-foo");
        for bad in ["permessage-deflate; =1", "a;b=\"c d\"", "a b", "a;b=\"x"] {
            assert_eq!(parse_extensions(bad), Err(ExtensionSyntaxError), "{bad}");
        }
    }

    #[test]
    fn lines_of_a_header_are_joined_before_parsing() {
        let mut h = HeaderMap::new();
        h.append(header::SEC_WEBSOCKET_EXTENSIONS, "a; x=1".parse().unwrap());
        h.append(header::SEC_WEBSOCKET_EXTENSIONS, "b".parse().unwrap());
        let names: Vec<String> = from_headers(&h)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        h.append(header::SEC_WEBSOCKET_EXTENSIONS, "c d".parse().unwrap());
        assert_eq!(from_headers(&h), Err(ExtensionSyntaxError));
    }
}
