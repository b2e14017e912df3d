//! HTTP client for a Confluent-compatible schema registry: flowctl's own server or Confluent's.
//! Only the calls flowctl needs; each maps Confluent's error bodies back to [`RegistryError`].

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{CompatReport, RegistryError};
use crate::contracts::registry::CONTENT_TYPE;

/// How to log in to an external registry (`FLOWCTL_SCHEMA_REGISTRY_AUTH`): `user:password` as
/// HTTP basic auth (Confluent's `basic.auth.user.info`, e.g. a Confluent Cloud API key and
/// secret), or `bearer:TOKEN`. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::Basic { user, .. } => write!(f, "Basic({user}:***)"),
            RegistryAuth::Bearer(_) => write!(f, "Bearer(***)"),
        }
    }
}

impl RegistryAuth {
    /// Parses `user:password` or `bearer:TOKEN`; the error never repeats the value.
    pub fn parse(value: &str) -> Result<RegistryAuth, String> {
        let value = value.trim();
        if let Some(token) = value.strip_prefix("bearer:") {
            return match token.trim() {
                "" => Err("`bearer:` needs a token after it".into()),
                t => Ok(RegistryAuth::Bearer(t.to_string())),
            };
        }
        match value.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(RegistryAuth::Basic {
                user: user.to_string(),
                password: password.to_string(),
            }),
            _ => Err("expected user:password (HTTP basic auth) or bearer:TOKEN".into()),
        }
    }

    fn secret(&self) -> &str {
        match self {
            RegistryAuth::Basic { password, .. } => password,
            RegistryAuth::Bearer(t) => t,
        }
    }
}

/// Where the external registry is (`FLOWCTL_SCHEMA_REGISTRY_URL`) and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryEndpoint {
    pub url: String,
    pub auth: Option<RegistryAuth>,
}

impl std::fmt::Debug for RegistryEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryEndpoint")
            .field("url", &redact(&self.url))
            .field("auth", &self.auth)
            .finish()
    }
}

impl RegistryEndpoint {
    /// An endpoint without `FLOWCTL_SCHEMA_REGISTRY_AUTH` (credentials may still be in the URL).
    pub fn new(url: impl Into<String>) -> RegistryEndpoint {
        RegistryEndpoint {
            url: url.into(),
            auth: None,
        }
    }
}

/// Client for `FLOWCTL_SCHEMA_REGISTRY_URL`. Credentials may be given in the URL
/// (`https://key:secret@host`), as Confluent Cloud needs, or in `FLOWCTL_SCHEMA_REGISTRY_AUTH`;
/// they are sent as HTTP basic (or bearer) auth and never shown in messages or `Debug`.
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    /// `base` with any `user:password@` replaced by `***@`.
    shown: String,
    auth: Option<RegistryAuth>,
    http: reqwest::Client,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("url", &self.shown)
            .field("auth", &self.auth)
            .finish()
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: i64,
}

#[derive(Deserialize)]
struct VersionBody {
    version: i64,
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
}

#[derive(Deserialize)]
struct CompatBody {
    is_compatible: bool,
    #[serde(default)]
    messages: Vec<String>,
}

/// Path segments are percent-encoded: subjects may contain `/` or spaces.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RegistryClient {
    pub fn new(endpoint: &RegistryEndpoint) -> RegistryClient {
        let base = endpoint.url.trim_end_matches('/').to_string();
        RegistryClient {
            shown: redact(&base),
            base,
            auth: endpoint.auth.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The URL for display (credentials redacted).
    pub fn url(&self) -> &str {
        &self.shown
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, RegistryError> {
        let url = format!("{}{path}", self.base);
        let shown = format!("{}{path}", self.shown);
        let transport = |detail: String| {
            let mut detail = detail.replace(&self.base, &self.shown);
            if let Some(a) = self.auth.as_ref().filter(|a| !a.secret().is_empty()) {
                detail = detail.replace(a.secret(), "***");
            }
            RegistryError::Transport {
                url: shown.clone(),
                detail,
            }
        };
        let mut req = self
            .http
            .request(method, &url)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        req = match &self.auth {
            Some(RegistryAuth::Basic { user, password }) => req.basic_auth(user, Some(password)),
            Some(RegistryAuth::Bearer(token)) => req.bearer_auth(token),
            None => req,
        };
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport(crate::vocab::error_chain(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport(crate::vocab::error_chain(&e)))?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => RegistryError::from_remote(status, e.error_code, e.message),
                Err(_) => transport(format!(
                    "HTTP {status} with a body that is not a registry error: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                )),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            transport(format!(
                "expected a schema registry response, found {}: {e}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })
    }

    /// Registers and returns `(id, version)`: Confluent answers registration with the id only,
    /// so the version comes from a lookup.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<(i64, i64), RegistryError> {
        let body = json!({"schema": schema, "schemaType": "AVRO"});
        let id: IdBody = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{}/versions", seg(subject)),
                Some(body.clone()),
            )
            .await?;
        let version = self
            .call::<VersionBody>(
                reqwest::Method::POST,
                &format!("/subjects/{}", seg(subject)),
                Some(body),
            )
            .await
            .map(|v| v.version)
            .unwrap_or(0);
        Ok((id.id, version))
    }

    pub async fn check(&self, subject: &str, schema: &str) -> Result<CompatReport, RegistryError> {
        let res: Result<CompatBody, _> = self
            .call(
                reqwest::Method::POST,
                &format!(
                    "/compatibility/subjects/{}/versions/latest?verbose=true",
                    seg(subject)
                ),
                Some(json!({"schema": schema, "schemaType": "AVRO"})),
            )
            .await;
        match res {
            Ok(c) => Ok(CompatReport {
                is_compatible: c.is_compatible,
                messages: c.messages,
            }),
            // No versions yet: anything is compatible.
            Err(RegistryError::SubjectNotFound(_)) => Ok(CompatReport {
                is_compatible: true,
                messages: vec![],
            }),
            Err(RegistryError::Remote { code: 40402, .. }) => Ok(CompatReport {
                is_compatible: true,
                messages: vec![],
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn schema_by_id(&self, id: i64) -> Result<String, RegistryError> {
        let s: SchemaBody = self
            .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
            .await?;
        Ok(s.schema)
    }

    /// The latest live version of `subject`: `(id, schema)`.
    pub async fn latest(&self, subject: &str) -> Result<(i64, String), RegistryError> {
        #[derive(Deserialize)]
        struct Latest {
            id: i64,
            schema: String,
        }
        let l: Latest = self
            .call(
                reqwest::Method::GET,
                &format!("/subjects/{subject}/versions/latest"),
                None,
            )
            .await?;
        Ok((l.id, l.schema))
    }

    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        self.call(reqwest::Method::GET, "/subjects", None).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            super::redact("https://key:secret@sr.example:443"),
            "https://***@sr.example:443"
        );
        assert_eq!(
            super::redact("http://127.0.0.1:8081"),
            "http://127.0.0.1:8081"
        );
    }

    #[test]
    fn registry_auth_is_basic_or_bearer_and_never_shown() {
        use super::RegistryAuth;
        assert_eq!(
            RegistryAuth::parse("KEY:se:cret").unwrap(),
            RegistryAuth::Basic {
                user: "KEY".into(),
                password: "se:cret".into()
            }
        );
        assert_eq!(
            RegistryAuth::parse(" bearer:tok123 ").unwrap(),
            RegistryAuth::Bearer("tok123".into())
        );
        for bad in ["", "nocolon", ":pw", "bearer:"] {
            assert!(RegistryAuth::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let shown = format!(
            "{:?} {:?}",
            RegistryAuth::parse("KEY:se:cret").unwrap(),
            RegistryAuth::parse("bearer:tok123").unwrap()
        );
        assert_eq!(shown, "Basic(KEY:***) Bearer(***)");
    }
}
