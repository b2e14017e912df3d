//! What every request must satisfy before a handler sees it: a Host this server answers to,
//! a body within the size limit, and — for anything that changes state — no sign of having
//! been sent by another site's page, in a media type no page can send without asking first.
//!
//! Without a token (the default) the API is open to whoever can reach the port, and a browser
//! reaches it on behalf of every page it shows: a form on `evil.example` can POST
//! `text/plain` or form-encoded bodies to `127.0.0.1:8080`, a `fetch` in `no-cors` mode can send
//! a bodyless POST, and neither asks the server first (no CORS preflight). A DNS-rebinding page
//! even becomes "same origin" with a loopback server. So:
//! - on a loopback listener, the `Host` must be a loopback name (or one allowed in
//!   `FLOWCTL_ALLOWED_HOSTS`): a rebinding page sends its own host name;
//! - a mutating request (anything but GET/HEAD/OPTIONS) carrying `Sec-Fetch-Site` other than
//!   `same-origin`/`none`, an `Origin` (or, without one, a `Referer`) naming another host:port
//!   than the request's `Host`, or `Origin: null`, is refused with 403 — browsers always send
//!   these on cross-site writes, command-line clients never do;
//! - API and registry writes must be JSON (the registry also takes Confluent's media types);
//!   `text/plain`, form and multipart bodies — the ones a page may send unasked — get 415.
//!   UI forms stay form-encoded; their CSRF double-submit token covers them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, MAX_BODY};
use crate::store::Store;

/// Which bodies a group of routes takes, and how it words its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// The UI's HTML forms (form-encoded, CSRF-checked by the handlers).
    Forms,
    /// The JSON API: `application/json` (or `application/*+json`).
    Api,
    /// The Confluent-compatible registry: JSON, `application/vnd.schemaregistry[.v1]+json`,
    /// or `application/octet-stream` (what Confluent's own server accepts); errors in its
    /// `{"error_code", "message"}` shape.
    Registry,
}

/// The `Host` names a server answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hosts {
    /// Any name (a server on a public address cannot know all of its names).
    Any,
    /// Loopback names (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`) and these extra names.
    Loopback(Vec<String>),
}

impl Hosts {
    /// For a listener on `addr`: loopback names only when the address is loopback, plus
    /// `extra` (`FLOWCTL_ALLOWED_HOSTS`, lower case: a reverse proxy that passes its own name).
    pub fn for_listener(addr: SocketAddr, extra: &[String]) -> Hosts {
        if !addr.ip().is_loopback() {
            return Hosts::Any;
        }
        Hosts::Loopback(extra.to_vec())
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            Hosts::Any => true,
            Hosts::Loopback(extra) => {
                let name = host_name(host).to_ascii_lowercase();
                name == "localhost"
                    || name.ends_with(".localhost")
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
                    || extra.contains(&name)
            }
        }
    }
}

/// The guard's configuration for one group of routes.
#[derive(Debug, Clone)]
pub struct Guard {
    pub routes: Routes,
    pub hosts: Arc<Hosts>,
    /// Checked first: with the state DB deleted or replaced under the server, every request
    /// gets 503 and the reason, instead of answers from (or writes into) a lost file.
    pub store: Store,
}

/// The middleware: `axum::middleware::from_fn_with_state(guard, check)`.
pub async fn check(State(g): State<Guard>, req: Request, next: Next) -> Response {
    if let Err(e) = g.store.check_file() {
        return refuse(g.routes, StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    match refusal(g.routes, &g.hosts, req.method(), req.headers()) {
        Some((status, message)) => refuse(g.routes, status, message),
        None => next.run(req).await,
    }
}

/// Why a request is refused, if it is.
fn refusal(
    routes: Routes,
    hosts: &Hosts,
    method: &Method,
    h: &HeaderMap,
) -> Option<(StatusCode, String)> {
    let host = header_str(h, header::HOST);
    if let Some(host) = host
        && !hosts.allows(host)
    {
        return Some((
            StatusCode::FORBIDDEN,
            format!(
                "Host `{host}` is not a name of this server: it listens on loopback and answers \
                 only to localhost names (a page on another site may have resolved its own name \
                 to 127.0.0.1); add the name to FLOWCTL_ALLOWED_HOSTS to allow it"
            ),
        ));
    }
    if let Some(len) = header_str(h, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok())
        && len > MAX_BODY as u64
    {
        return Some((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {len} bytes is over the limit of {MAX_BODY} bytes"),
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(why) = cross_site(h) {
        return Some((
            StatusCode::FORBIDDEN,
            format!(
                "cross-site request refused: {why}; changes are taken only from this server's \
                 own pages and from clients that are not browsers"
            ),
        ));
    }
    if routes != Routes::Forms {
        return media_type_refusal(routes, h).map(|m| (StatusCode::UNSUPPORTED_MEDIA_TYPE, m));
    }
    None
}

/// Why a mutating request looks sent by another site's page, if it does.
fn cross_site(h: &HeaderMap) -> Option<String> {
    if let Some(site) = header_str(h, "sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Some(format!("the browser marked it `Sec-Fetch-Site: {site}`"));
    }
    let host = header_str(h, header::HOST)?;
    let forwarded = header_str(h, "x-forwarded-host");
    let (what, value) = match header_str(h, header::ORIGIN) {
        Some(o) => ("Origin", o),
        None => ("Referer", header_str(h, header::REFERER)?),
    };
    if what == "Origin" && value == "null" {
        return Some("`Origin: null` (a sandboxed or opaque page)".into());
    }
    let same = url::Url::parse(value).ok().is_some_and(|u| {
        [Some(host), forwarded]
            .into_iter()
            .flatten()
            .any(|h| same_authority(&u, h))
    });
    (!same).then(|| format!("{what} `{value}` is not this server (`Host: {host}`)"))
}

/// Whether `url`'s host and port are those of a `Host` header value (a port left out on
/// either side is the scheme's default).
fn same_authority(url: &url::Url, host_header: &str) -> bool {
    let Some(url_host) = url.host_str() else {
        return false;
    };
    let (name, port) = split_host(host_header);
    let port = match port {
        Some(p) => p.parse::<u16>().ok(),
        None => url.port_or_known_default(),
    };
    url_host.eq_ignore_ascii_case(name) && url.port_or_known_default() == port
}

/// Why the body's media type is refused on API or registry writes, if it is.
fn media_type_refusal(routes: Routes, h: &HeaderMap) -> Option<String> {
    let essence = header_str(h, header::CONTENT_TYPE).map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let has_body = h.contains_key(header::TRANSFER_ENCODING)
        || header_str(h, header::CONTENT_LENGTH).is_some_and(|l| l.trim() != "0");
    let wanted = match routes {
        Routes::Registry => {
            "application/vnd.schemaregistry.v1+json (or application/vnd.schemaregistry+json, application/json)"
        }
        _ => "application/json",
    };
    let accepted = |e: &str| {
        e == "application/json"
            || (e.starts_with("application/") && e.ends_with("+json"))
            || (routes == Routes::Registry && e == "application/octet-stream")
    };
    match essence.as_deref() {
        Some(e) if !accepted(e) => Some(format!(
            "Content-Type `{e}` is not accepted here: send {wanted}"
        )),
        None if has_body => Some(format!("a request body needs `Content-Type: {wanted}`")),
        _ => None,
    }
}

fn refuse(routes: Routes, status: StatusCode, message: String) -> Response {
    match routes {
        Routes::Registry => {
            let code = match status {
                StatusCode::FORBIDDEN => 40301,
                s => i64::from(s.as_u16()),
            };
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    crate::contracts::registry::CONTENT_TYPE,
                )],
                serde_json::json!({"error_code": code, "message": message}).to_string(),
            )
                .into_response()
        }
        _ => ApiError::new(status, message).into_response(),
    }
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `host[:port]` → (host, port); IPv6 literals keep their brackets.
fn split_host(v: &str) -> (&str, Option<&str>) {
    if v.starts_with('[') {
        return match v.find(']') {
            Some(end) => (&v[..=end], v[end + 1..].strip_prefix(':')),
            None => (v, None),
        };
    }
    match v.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (v, None),
    }
}

fn host_name(v: &str) -> &str {
    split_host(v).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn status(routes: Routes, method: Method, pairs: &[(&str, &str)]) -> Option<u16> {
        let hosts = Hosts::Loopback(vec!["flowctl.internal".into()]);
        refusal(routes, &hosts, &method, &headers(pairs)).map(|(s, _)| s.as_u16())
    }

    #[test]
    fn cross_site_writes_are_refused_and_same_origin_ones_pass() {
        let host = ("host", "127.0.0.1:8080");
        let post = Method::POST;
        for r in [Routes::Forms, Routes::Api, Routes::Registry] {
            // What a page on another site makes a browser send.
            assert_eq!(
                status(r, post.clone(), &[host, ("origin", "http://evil.example")]),
                Some(403)
            );
            assert_eq!(
                status(r, post.clone(), &[host, ("origin", "null")]),
                Some(403)
            );
            assert_eq!(
                status(
                    r,
                    post.clone(),
                    &[host, ("origin", "http://127.0.0.1:9999")]
                ),
                Some(403)
            );
            assert_eq!(
                status(r, post.clone(), &[host, ("sec-fetch-site", "cross-site")]),
                Some(403)
            );
            assert_eq!(
                status(r, post.clone(), &[host, ("sec-fetch-site", "same-site")]),
                Some(403)
            );
            assert_eq!(
                status(
                    r,
                    Method::DELETE,
                    &[host, ("referer", "http://evil.example/x")]
                ),
                Some(403)
            );
            // Our own pages, and clients that are not browsers.
            assert_eq!(
                status(
                    r,
                    post.clone(),
                    &[
                        host,
                        ("origin", "http://127.0.0.1:8080"),
                        ("sec-fetch-site", "same-origin")
                    ]
                ),
                None
            );
            assert_eq!(
                status(
                    r,
                    post.clone(),
                    &[host, ("referer", "http://127.0.0.1:8080/runs/1")]
                ),
                None
            );
            assert_eq!(status(r, post.clone(), &[host]), None);
            // Reads are not writes.
            assert_eq!(
                status(r, Method::GET, &[host, ("origin", "http://evil.example")]),
                None
            );
        }
        // Default ports and IPv6 literals compare by host and port.
        assert_eq!(
            status(
                Routes::Forms,
                post.clone(),
                &[("host", "localhost"), ("origin", "http://localhost:80")]
            ),
            None
        );
        assert_eq!(
            status(
                Routes::Forms,
                post.clone(),
                &[("host", "[::1]:8080"), ("origin", "http://[::1]:8080")]
            ),
            None
        );
        // Behind a TLS proxy that passes its own name.
        assert_eq!(
            status(
                Routes::Forms,
                post,
                &[
                    ("host", "flowctl.internal"),
                    ("origin", "https://flowctl.internal")
                ]
            ),
            None
        );
    }

    #[test]
    fn api_and_registry_writes_must_be_json() {
        let host = ("host", "localhost:8080");
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "TEXT/PLAIN;charset=utf-8",
        ] {
            for r in [Routes::Api, Routes::Registry] {
                assert_eq!(
                    status(
                        r,
                        Method::POST,
                        &[host, ("content-type", ct), ("content-length", "2")]
                    ),
                    Some(415),
                    "{ct}"
                );
                assert_eq!(
                    status(r, Method::PUT, &[host, ("content-type", ct)]),
                    Some(415),
                    "{ct} without a body"
                );
            }
            assert_eq!(
                status(Routes::Forms, Method::POST, &[host, ("content-type", ct)]),
                None
            );
        }
        let body = ("content-length", "2");
        assert_eq!(
            status(Routes::Api, Method::POST, &[host, body]),
            Some(415),
            "a body without a type"
        );
        assert_eq!(
            status(Routes::Api, Method::POST, &[host, ("content-length", "0")]),
            None
        );
        assert_eq!(
            status(
                Routes::Api,
                Method::POST,
                &[
                    host,
                    body,
                    ("content-type", "application/json; charset=utf-8")
                ]
            ),
            None
        );
        for ct in [
            "application/vnd.schemaregistry.v1+json",
            "application/vnd.schemaregistry+json",
            "application/json",
            "application/octet-stream",
        ] {
            assert_eq!(
                status(
                    Routes::Registry,
                    Method::POST,
                    &[host, body, ("content-type", ct)]
                ),
                None,
                "{ct}"
            );
        }
        assert_eq!(
            status(
                Routes::Api,
                Method::POST,
                &[host, body, ("content-type", "application/octet-stream")]
            ),
            Some(415)
        );
    }

    #[test]
    fn loopback_servers_answer_only_to_loopback_names() {
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "app.localhost:8080",
            "[::1]:8080",
            "127.3.4.5",
            "flowctl.internal:443",
        ] {
            assert_eq!(
                status(Routes::Api, Method::GET, &[("host", ok)]),
                None,
                "{ok}"
            );
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "10.0.0.1:8080",
            "localhost.evil.example",
        ] {
            assert_eq!(
                status(Routes::Api, Method::GET, &[("host", bad)]),
                Some(403),
                "{bad}"
            );
        }
        let any = Hosts::Any;
        assert!(
            refusal(
                Routes::Api,
                &any,
                &Method::GET,
                &headers(&[("host", "evil.example")])
            )
            .is_none()
        );
    }

    #[test]
    fn oversized_bodies_are_refused_before_they_are_read() {
        let big = (MAX_BODY + 1).to_string();
        let h = [
            ("host", "localhost"),
            ("content-length", big.as_str()),
            ("content-type", "application/json"),
        ];
        for r in [Routes::Forms, Routes::Api, Routes::Registry] {
            assert_eq!(status(r, Method::POST, &h), Some(413));
            assert_eq!(status(r, Method::GET, &h), Some(413));
        }
    }
}
