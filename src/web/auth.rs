//! API bearer tokens and the UI's CSRF protection.
//!
//! With `FLOWCTL_API_TOKEN` set, every mutating API call needs `Authorization: Bearer <token>`,
//! and the UI asks for the token once (stored in an HttpOnly, SameSite=Strict cookie). UI forms
//! are CSRF-protected with a double-submit token: a random cookie echoed in a hidden field.

use axum::http::{HeaderMap, StatusCode, header};

use super::{ApiError, AppState};

pub const CSRF_COOKIE: &str = "flowctl_csrf";
pub const SESSION_COOKIE: &str = "flowctl_token";

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Checks the bearer token of an API call.
pub fn require_bearer(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    check_bearer(state.token.as_deref(), headers)
}

/// The bearer check itself, for anything that knows the configured token (None: open).
pub fn check_bearer(token: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials);
    match given {
        Some(g) if same(g, token) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid bearer token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server requires `Authorization: Bearer <FLOWCTL_API_TOKEN>` for changes",
        )),
    }
}

/// The credentials of a `Bearer` authorization header. The scheme is case-insensitive
/// (RFC 7235 §2.1: `bearer`, `BEARER` are the same scheme) and separated from the token by
/// one or more spaces.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Checks a UI form post: the CSRF field must match the cookie, and with a token configured the
/// session cookie must hold it.
pub fn require_form(
    state: &AppState,
    headers: &HeaderMap,
    csrf_field: &str,
) -> Result<(), ApiError> {
    let cookie_csrf = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    if cookie_csrf.len() < 16 || !same(&cookie_csrf, csrf_field) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "CSRF check failed: reload the page and try again",
        ));
    }
    if let Some(token) = &state.token {
        let session = cookie(headers, SESSION_COOKIE).unwrap_or_default();
        if !same(&session, token) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "log in first (/login)",
            ));
        }
    }
    Ok(())
}

/// The CSRF token for this browser: the existing cookie, or a fresh random one to set.
pub fn csrf_token(headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE)
        .filter(|c| c.len() >= 16 && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
    {
        Some(c) => (c, None),
        None => {
            let t: String = (0..32)
                .map(|_| {
                    let n = rand::random_range(0..62u8);
                    (match n {
                        0..=9 => b'0' + n,
                        10..=35 => b'a' + n - 10,
                        _ => b'A' + n - 36,
                    }) as char
                })
                .collect();
            let set = format!("{CSRF_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
            (t, Some(set))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer t0k",
            "bearer t0k",
            "BEARER   t0k",
            "bEaReR\tt0k ",
            "  Bearer t0k",
        ] {
            assert_eq!(bearer_credentials(v), Some("t0k"), "{v:?}");
        }
        for v in ["Basic dXNlcg==", "Bearer", "Bearer ", "Bearert0k", "t0k"] {
            assert_eq!(bearer_credentials(v), None, "{v:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert!(check_bearer(Some("s3cret"), &h).is_ok());
        h.insert(header::AUTHORIZATION, "BEARER wrong".parse().unwrap());
        assert_eq!(
            check_bearer(Some("s3cret"), &h).unwrap_err().message,
            "invalid bearer token"
        );
    }
}
