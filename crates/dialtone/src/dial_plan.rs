//! What a dial does between attempts, sans I/O, for both faces
//! ([`Dialer::dial`] and [`Dialer::dial_blocking`]): which URL to try and
//! with which `Authorization`, and what a refusal leads to — a redirect
//! followed (301, 302, 303, 307, 308; at most `max_redirects`; never from
//! `wss://` to `ws://` unless allowed), a Digest challenge answered (once,
//! and once more if the server says the nonce was stale), or the error.
//! Cookies are stored from every response. The faces only open transports
//! and move bytes.
//!
//! Credentials go to the URL's own origin only: a redirect to another
//! host or port loses them (the `Location`'s own user info excepted).

use dialtone_proto::handshake::ClientHandshake;
use dialtone_proto::http::StatusCode;
use url::Url;

use crate::dialer::{Auth, Dialer};
use crate::digest;
use crate::error::{Error, Rejection, Result};
use crate::handshake::{parse_url, target, Response};

/// The state of one dial.
#[derive(Debug)]
pub(crate) struct DialPlan<'a> {
    dialer: &'a Dialer,
    first: Url,
    url: Url,
    hops: usize,
    /// The Digest challenge the next attempt answers.
    digest: Option<digest::Challenge>,
    /// How many Digest challenges of this URL were answered.
    digest_answers: usize,
}

/// One handshake to make: where, and the request to send.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) url: Url,
    pub(crate) request: ClientHandshake,
}

impl<'a> DialPlan<'a> {
    pub(crate) fn new(dialer: &'a Dialer, url: &str) -> Result<Self> {
        let first = parse_url(url)?;
        Ok(DialPlan {
            dialer,
            url: first.clone(),
            first,
            hops: 0,
            digest: None,
            digest_answers: 0,
        })
    }

    /// The next handshake to make.
    pub(crate) fn attempt(&self) -> Result<Attempt> {
        let authorization = self.authorization()?;
        let request = self.dialer.request(&self.url, authorization.as_deref())?;
        Ok(Attempt {
            url: self.url.clone(),
            request,
        })
    }

    /// The handshake succeeded: its cookies are kept.
    #[cfg_attr(not(feature = "cookies"), allow(unused_variables))]
    pub(crate) fn upgraded(&self, response: &Response) {
        #[cfg(feature = "cookies")]
        if let Some(jar) = self.dialer.cookie_jar_ref() {
            jar.store_from(&self.url, &response.head.headers);
        }
    }

    /// A refusal that is not followed (over a caller's transport, where
    /// there is no second attempt): its cookies are kept.
    #[cfg_attr(not(feature = "cookies"), allow(unused_variables))]
    pub(crate) fn refused(&self, r: &Rejection) {
        #[cfg(feature = "cookies")]
        if let Some(jar) = self.dialer.cookie_jar_ref() {
            jar.store_from(&self.url, &r.headers);
        }
    }

    /// The server refused the attempt: `Ok` to make the next
    /// [`attempt`](DialPlan::attempt), or the dial's error.
    pub(crate) fn rejected(&mut self, r: Box<Rejection>) -> Result<()> {
        self.refused(&r);
        if is_redirect(r.status) {
            let next = redirect_target(&self.url, &r)?;
            if self.hops >= self.dialer.max_redirects_value() {
                return Err(Error::Redirect(format!(
                    "more than {} redirects (next: {next})",
                    self.dialer.max_redirects_value()
                )));
            }
            if self.url.scheme() == "wss"
                && next.scheme() == "ws"
                && !self.dialer.allows_downgrade()
            {
                return Err(Error::Redirect(format!(
                    "refusing to follow {} to {next}, which drops TLS",
                    self.url
                )));
            }
            tracing::debug!("handshake redirected ({}) to {next}", r.status);
            self.hops += 1;
            self.url = next;
            self.digest = None;
            self.digest_answers = 0;
            return Ok(());
        }
        if r.status == StatusCode::UNAUTHORIZED && self.password().is_some() {
            if let Some(challenge) = digest::challenge(&r.headers) {
                // The first challenge is answered; a second only if our
                // answer was refused for its nonce's age, not its password.
                let again = self.digest_answers == 1 && challenge.stale;
                if self.digest_answers == 0 || again {
                    tracing::debug!("answering a Digest challenge for {}", self.url);
                    self.digest_answers += 1;
                    self.digest = Some(challenge);
                    return Ok(());
                }
            }
        }
        Err(Error::Rejected(r))
    }

    /// The credentials for the URL being dialed: its own user info, else
    /// the first URL's or the dialer's while on the first URL's origin.
    fn credentials(&self) -> Option<Auth> {
        url_auth(&self.url).or_else(|| {
            same_origin(&self.url, &self.first)
                .then(|| url_auth(&self.first).or_else(|| self.dialer.auth_ref().cloned()))
                .flatten()
        })
    }

    /// A user name and password, to answer a Digest challenge with.
    fn password(&self) -> Option<(String, String)> {
        match self.credentials()? {
            Auth::Basic { user, password } | Auth::Digest { user, password } => {
                Some((user, password))
            }
            Auth::Bearer(_) => None,
        }
    }

    /// The `Authorization` header of the next attempt, if any.
    fn authorization(&self) -> Result<Option<String>> {
        if self.dialer.has_explicit_authorization() {
            return Ok(None);
        }
        if let (Some(challenge), Some((user, password))) = (&self.digest, self.password()) {
            let (_, uri, _) = target(&self.url)?;
            let cnonce = dialtone_proto::handshake::generate_key();
            let cnonce = cnonce.trim_end_matches('=');
            return Ok(Some(
                challenge.authorization(&user, &password, &uri, cnonce),
            ));
        }
        Ok(match self.credentials() {
            Some(auth @ (Auth::Basic { .. } | Auth::Bearer(_))) => Some(auth.header_value()),
            // Digest waits for the server's challenge.
            Some(Auth::Digest { .. }) | None => None,
        })
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The `ws`/`wss` URL a redirect points to (`http` → `ws`, `https` → `wss`).
fn redirect_target(from: &Url, r: &Rejection) -> Result<Url> {
    let location = r
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Redirect(format!("{} without a Location", r.status)))?;
    let mut next = from
        .join(location)
        .map_err(|e| Error::Redirect(format!("bad Location {location:?}: {e}")))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(Error::Redirect(format!("redirect to a {other}: URL"))),
    };
    // `set_scheme` refuses some special-scheme changes; rebuild the URL instead.
    if next.scheme() != scheme {
        let rest = &next.as_str()[next.scheme().len()..];
        next = Url::parse(&format!("{scheme}{rest}"))
            .map_err(|e| Error::Redirect(format!("bad Location {location:?}: {e}")))?;
    }
    next.set_fragment(None);
    Ok(next)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// Basic credentials from the URL's user info, percent-decoded.
fn url_auth(url: &Url) -> Option<Auth> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some(Auth::Basic {
        user: decode(url.username()),
        password: decode(url.password().unwrap_or("")),
    })
}

#[cfg(test)]
mod tests {
    use dialtone_proto::http::{HeaderMap, HeaderValue};

    use super::*;
    #[cfg(feature = "cookies")]
    use crate::CookieJar;

    fn refusal(status: u16, headers: &[(&str, &str)]) -> Box<Rejection> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                dialtone_proto::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Box::new(Rejection {
            status: StatusCode::from_u16(status).unwrap(),
            reason: String::new(),
            headers: map,
            body: Default::default(),
        })
    }

    fn authorization(plan: &DialPlan<'_>) -> Option<String> {
        let bytes = plan.attempt().unwrap().request.to_bytes();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("authorization: ").map(str::to_owned))
    }

    const CHALLENGE: &str = "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"";

    #[test]
    fn a_cross_origin_redirect_drops_every_kind_of_credentials() {
        for auth in [
            Auth::Bearer("t".into()),
            Auth::Basic {
                user: "u".into(),
                password: "p".into(),
            },
        ] {
            let dialer = Dialer::new().auth(auth);
            let mut plan = DialPlan::new(&dialer, "ws://a.test/").unwrap();
            assert!(authorization(&plan).is_some());
            plan.rejected(refusal(302, &[("location", "/same")]))
                .unwrap();
            assert!(authorization(&plan).is_some(), "same origin keeps them");
            plan.rejected(refusal(307, &[("location", "ws://b.test/")]))
                .unwrap();
            assert_eq!(authorization(&plan), None, "another host loses them");
            plan.rejected(refusal(307, &[("location", "ws://a.test:81/")]))
                .unwrap();
            assert_eq!(authorization(&plan), None, "another port too");
        }
        // The URL's user info, too, and a Digest challenge is no longer answered.
        let dialer = Dialer::new();
        let mut plan = DialPlan::new(&dialer, "ws://u:p@a.test/").unwrap();
        plan.rejected(refusal(302, &[("location", "ws://b.test/")]))
            .unwrap();
        assert_eq!(authorization(&plan), None);
        let e = plan.rejected(refusal(401, &[("www-authenticate", CHALLENGE)]));
        assert!(
            matches!(e, Err(Error::Rejected(ref r)) if r.status == 401),
            "{e:?}"
        );
    }

    #[test]
    fn digest_credentials_wait_for_the_challenge_and_answer_it_once() {
        let dialer = Dialer::new().auth(Auth::Digest {
            user: "u".into(),
            password: "p".into(),
        });
        let mut plan = DialPlan::new(&dialer, "ws://a.test/x?y").unwrap();
        assert_eq!(
            authorization(&plan),
            None,
            "no password before the challenge"
        );
        plan.rejected(refusal(401, &[("www-authenticate", CHALLENGE)]))
            .unwrap();
        let answer = authorization(&plan).unwrap();
        assert!(
            answer.starts_with("Digest username=\"u\", realm=\"r\", nonce=\"n1\", uri=\"/x?y\""),
            "{answer}"
        );
        // Refused again (wrong password): the refusal is the dial's error.
        let e = plan.rejected(refusal(401, &[("www-authenticate", CHALLENGE)]));
        assert!(
            matches!(e, Err(Error::Rejected(ref r)) if r.headers.contains_key("www-authenticate"))
        );
    }

    #[test]
    fn a_stale_nonce_is_answered_once_more() {
        let dialer = Dialer::new();
        let mut plan = DialPlan::new(&dialer, "ws://u:p@a.test/").unwrap();
        assert!(
            authorization(&plan).unwrap().starts_with("Basic "),
            "URL credentials are Basic first"
        );
        plan.rejected(refusal(401, &[("www-authenticate", CHALLENGE)]))
            .unwrap();
        let stale = "Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", stale=true";
        plan.rejected(refusal(401, &[("www-authenticate", stale)]))
            .unwrap();
        assert!(authorization(&plan).unwrap().contains("nonce=\"n2\""));
        let e = plan.rejected(refusal(401, &[("www-authenticate", stale)]));
        assert!(matches!(e, Err(Error::Rejected(_))), "{e:?}");
    }

    #[test]
    fn bearer_tokens_do_not_answer_digest_and_basic_challenges_end_the_dial() {
        let dialer = Dialer::new().auth(Auth::Bearer("t".into()));
        let mut plan = DialPlan::new(&dialer, "ws://a.test/").unwrap();
        assert!(plan
            .rejected(refusal(401, &[("www-authenticate", CHALLENGE)]))
            .is_err());
        let dialer = Dialer::new();
        let mut plan = DialPlan::new(&dialer, "ws://u:p@a.test/").unwrap();
        assert!(plan
            .rejected(refusal(401, &[("www-authenticate", "Basic realm=\"x\"")]))
            .is_err());
    }

    #[test]
    fn redirects_follow_http_schemes_but_not_a_downgrade_and_stop_at_the_limit() {
        let dialer = Dialer::new().max_redirects(2);
        let mut plan = DialPlan::new(&dialer, "wss://a.test/").unwrap();
        plan.rejected(refusal(301, &[("location", "https://b.test/one")]))
            .unwrap();
        assert_eq!(plan.attempt().unwrap().url.as_str(), "wss://b.test/one");
        let e = plan.rejected(refusal(302, &[("location", "http://b.test/")]));
        assert!(
            matches!(e, Err(Error::Redirect(ref m)) if m.contains("drops TLS")),
            "{e:?}"
        );
        let dialer = Dialer::new()
            .max_redirects(2)
            .allow_insecure_redirects(true);
        let mut plan = DialPlan::new(&dialer, "wss://a.test/").unwrap();
        plan.rejected(refusal(303, &[("location", "http://b.test/#frag")]))
            .unwrap();
        assert_eq!(plan.attempt().unwrap().url.as_str(), "ws://b.test/");
        plan.rejected(refusal(308, &[("location", "/2")])).unwrap();
        let e = plan.rejected(refusal(308, &[("location", "/3")]));
        assert!(
            matches!(e, Err(Error::Redirect(ref m)) if m.contains("more than 2")),
            "{e:?}"
        );
        let e = plan.rejected(refusal(302, &[]));
        assert!(matches!(e, Err(Error::Redirect(_))), "{e:?}");
    }

    #[cfg(feature = "cookies")]
    #[test]
    fn cookies_are_stored_from_refusals_and_sent_on_the_next_attempt() {
        let jar = CookieJar::new();
        let dialer = Dialer::new().cookie_jar(jar.clone());
        let mut plan = DialPlan::new(&dialer, "ws://a.test/").unwrap();
        plan.rejected(refusal(
            302,
            &[("set-cookie", "sid=1; Path=/"), ("location", "/in")],
        ))
        .unwrap();
        let request = String::from_utf8(plan.attempt().unwrap().request.to_bytes()).unwrap();
        assert!(request.contains("cookie: sid=1\r\n"), "{request}");
        assert_eq!(jar.len(), 1);
    }
}
