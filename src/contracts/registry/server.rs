//! Confluent Schema Registry REST API over [`Embedded`]: the subset real clients use, with
//! Confluent's content type, status codes and `{"error_code", "message"}` bodies.
//!
//! Request bodies are parsed by hand rather than with axum's `Json` extractor so that a malformed
//! body gets a Confluent-style 422 body (what clients parse), not axum's plain-text rejection,
//! and so that any content type clients send (`application/vnd.schemaregistry.v1+json`,
//! `application/json`, `application/octet-stream`) is accepted.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::RegistryError;
use super::service::{Embedded, validate_subject};
use crate::contracts::compat::Compatibility;
use crate::store::{Store, VersionSel};

/// Confluent's response content type.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry's API routes only: no `/` route and no fallback, so `flowctl serve` can
/// `merge` them into its own router (or `nest` them under a prefix; Confluent clients accept a
/// base URL with a path).
pub fn registry_router(store: Store) -> Router {
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compat_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compat_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .with_state(Embedded::new(store))
}

/// The registry as a standalone server (`flowctl registry serve`): the API plus Confluent's
/// `GET /` and a Confluent-style 404 body for unknown paths.
pub fn registry_app(store: Store) -> Router {
    registry_router(store)
        .route("/", get(|| async { ok(json!({})) }))
        .fallback(|| async {
            err(RegistryError::Remote {
                status: 404,
                code: 404,
                message: "HTTP 404 Not Found".into(),
            })
        })
}

fn ok(body: Json) -> Response {
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

fn err(e: RegistryError) -> Response {
    let (status, code) = e.codes();
    if status >= 500 {
        tracing::error!(error = %e, "schema registry request failed");
    }
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"error_code": code, "message": e.to_string()}).to_string(),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

type Reply = Result<Response, RegistryError>;

fn reply(r: Reply) -> Response {
    r.unwrap_or_else(err)
}

/// Query flags Confluent clients send; unknown ones (`normalize`, `format`, …) are ignored.
#[derive(Debug, Default, Deserialize)]
struct Flags {
    #[serde(default)]
    deleted: Option<String>,
    #[serde(default)]
    permanent: Option<String>,
    #[serde(default)]
    verbose: Option<String>,
    #[serde(default, rename = "defaultToGlobal")]
    default_to_global: Option<String>,
}

fn flag(v: &Option<String>) -> bool {
    v.as_deref() == Some("true")
}

/// The body of register / lookup / compatibility requests. Unknown fields are accepted on
/// purpose (no `deny_unknown_fields`): Confluent clients also send `metadata`, `ruleSet` and
/// the like, which a registry without data-contract rules ignores, as Confluent's own does
/// when those features are off.
#[derive(Debug, Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Json>>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, RegistryError> {
    serde_json::from_slice(body)
        .map_err(|e| RegistryError::BadRequest(format!("request body: {e}")))
}

fn schema_body(body: &Bytes) -> Result<SchemaBody, RegistryError> {
    let b: SchemaBody = parse_body(body)?;
    if b.references.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(RegistryError::InvalidSchema(
            "schema references are not supported by flowctl's registry".into(),
        ));
    }
    Ok(b)
}

fn parse_version(v: &str) -> Result<VersionSel, RegistryError> {
    if v == "latest" || v == "-1" {
        return Ok(VersionSel::Latest);
    }
    match v.parse::<i64>() {
        Ok(n) if (1..=i32::MAX as i64).contains(&n) => Ok(VersionSel::Number(n)),
        _ => Err(RegistryError::InvalidVersion(v.to_string())),
    }
}

fn version_json(v: &crate::store::SubjectVersion) -> Json {
    let mut j = json!({"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema});
    if v.schema_type != "AVRO" {
        j["schemaType"] = json!(v.schema_type);
    }
    j
}

async fn list_subjects(State(r): State<Embedded>, Query(f): Query<Flags>) -> Response {
    reply(
        async {
            Ok(ok(json!(
                r.store().registry_subjects(flag(&f.deleted)).await?
            )))
        }
        .await,
    )
}

async fn list_versions(
    State(r): State<Embedded>,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
) -> Response {
    reply(
        async {
            let vs = r
                .store()
                .registry_versions(&subject, flag(&f.deleted))
                .await?;
            if vs.is_empty() {
                return Err(RegistryError::SubjectNotFound(subject));
            }
            Ok(ok(json!(vs.iter().map(|v| v.version).collect::<Vec<_>>())))
        }
        .await,
    )
}

async fn register(State(r): State<Embedded>, Path(subject): Path<String>, body: Bytes) -> Response {
    reply(
        async {
            let b = schema_body(&body)?;
            let reg = r
                .register(&subject, b.schema_type.as_deref(), &b.schema)
                .await?;
            if !reg.existed {
                tracing::info!(
                    subject,
                    id = reg.id,
                    version = reg.version,
                    "schema registered"
                );
            }
            Ok(ok(json!({"id": reg.id})))
        }
        .await,
    )
}

async fn lookup(
    State(r): State<Embedded>,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
    body: Bytes,
) -> Response {
    reply(
        async {
            let b = schema_body(&body)?;
            let v = r
                .lookup(
                    &subject,
                    b.schema_type.as_deref(),
                    &b.schema,
                    flag(&f.deleted),
                )
                .await?;
            Ok(ok(version_json(&v)))
        }
        .await,
    )
}

async fn find_version(
    r: &Embedded,
    subject: &str,
    version: &str,
    deleted: bool,
) -> Result<crate::store::SubjectVersion, RegistryError> {
    let sel = parse_version(version)?;
    let all = r.store().registry_versions(subject, deleted).await?;
    if all.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject.to_string()));
    }
    match sel {
        VersionSel::Latest => all.into_iter().last(),
        VersionSel::Number(n) => all.into_iter().find(|v| v.version == n),
    }
    .ok_or_else(|| RegistryError::VersionNotFound {
        subject: subject.to_string(),
        version: version.to_string(),
    })
}

async fn get_version(
    State(r): State<Embedded>,
    Path((subject, version)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> Response {
    reply(
        async {
            let v = find_version(&r, &subject, &version, flag(&f.deleted)).await?;
            Ok(ok(version_json(&v)))
        }
        .await,
    )
}

async fn get_version_schema(
    State(r): State<Embedded>,
    Path((subject, version)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> Response {
    reply(
        async {
            let v = find_version(&r, &subject, &version, flag(&f.deleted)).await?;
            let raw: Json = serde_json::from_str(&v.schema).unwrap_or(Json::String(v.schema));
            Ok(ok(raw))
        }
        .await,
    )
}

async fn delete_subject(
    State(r): State<Embedded>,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
) -> Response {
    reply(
        async {
            let vs = r
                .store()
                .registry_delete_subject(&subject, flag(&f.permanent))
                .await?;
            Ok(ok(json!(vs)))
        }
        .await,
    )
}

async fn delete_version(
    State(r): State<Embedded>,
    Path((subject, version)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> Response {
    reply(
        async {
            let sel = parse_version(&version)?;
            let v = r
                .store()
                .registry_delete_version(&subject, sel, flag(&f.permanent))
                .await?;
            Ok(ok(json!(v)))
        }
        .await,
    )
}

fn parse_id(id: &str) -> Result<i64, RegistryError> {
    id.parse::<i64>()
        .map_err(|_| RegistryError::SchemaNotFound(id.to_string()))
}

async fn schema_by_id(State(r): State<Embedded>, Path(id): Path<String>) -> Response {
    reply(
        async {
            let (ty, schema) = r
                .store()
                .registry_schema_by_id(parse_id(&id)?)
                .await?
                .ok_or(RegistryError::SchemaNotFound(id))?;
            let mut j = json!({"schema": schema});
            if ty != "AVRO" {
                j["schemaType"] = json!(ty);
            }
            Ok(ok(j))
        }
        .await,
    )
}

async fn raw_schema_by_id(State(r): State<Embedded>, Path(id): Path<String>) -> Response {
    reply(
        async {
            let schema = r.schema_by_id(parse_id(&id)?).await?;
            Ok(ok(
                serde_json::from_str(&schema).unwrap_or(Json::String(schema))
            ))
        }
        .await,
    )
}

async fn versions_by_id(State(r): State<Embedded>, Path(id): Path<String>) -> Response {
    reply(
        async {
            let n = parse_id(&id)?;
            r.schema_by_id(n).await?;
            let pairs = r.store().registry_id_versions(n).await?;
            Ok(ok(json!(
                pairs
                    .iter()
                    .map(|(s, v)| json!({"subject": s, "version": v}))
                    .collect::<Vec<_>>()
            )))
        }
        .await,
    )
}

async fn compat(
    r: &Embedded,
    subject: &str,
    sel: VersionSel,
    verbose: bool,
    body: &Bytes,
) -> Reply {
    let b = schema_body(body)?;
    let report = r
        .check(subject, sel, b.schema_type.as_deref(), &b.schema)
        .await?;
    let mut j = json!({"is_compatible": report.is_compatible});
    if verbose {
        j["messages"] = json!(report.messages);
    }
    Ok(ok(j))
}

async fn compat_version(
    State(r): State<Embedded>,
    Path((subject, version)): Path<(String, String)>,
    Query(f): Query<Flags>,
    body: Bytes,
) -> Response {
    reply(
        async {
            let sel = parse_version(&version)?;
            compat(&r, &subject, sel, flag(&f.verbose), &body).await
        }
        .await,
    )
}

async fn compat_all(
    State(r): State<Embedded>,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
    body: Bytes,
) -> Response {
    reply(compat(&r, &subject, VersionSel::Latest, flag(&f.verbose), &body).await)
}

/// `PUT /config` body. Confluent accepts `compatibility`; some clients send
/// `compatibilityLevel`.
#[derive(Debug, Deserialize)]
struct ConfigBody {
    #[serde(default)]
    compatibility: Option<String>,
    #[serde(default, rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

fn level_from(body: &Bytes) -> Result<Compatibility, RegistryError> {
    let b: ConfigBody = parse_body(body)?;
    let raw = b.compatibility.or(b.compatibility_level).ok_or_else(|| {
        RegistryError::InvalidCompatibilityLevel("missing `compatibility`".into())
    })?;
    raw.parse()
        .map_err(|e: crate::contracts::compat::BadLevel| {
            RegistryError::InvalidCompatibilityLevel(e.to_string())
        })
}

async fn get_global_config(State(r): State<Embedded>) -> Response {
    reply(
        async {
            let level = r
                .store()
                .registry_config(None)
                .await?
                .unwrap_or_else(|| Compatibility::DEFAULT.to_string());
            Ok(ok(json!({"compatibilityLevel": level})))
        }
        .await,
    )
}

async fn put_global_config(State(r): State<Embedded>, body: Bytes) -> Response {
    reply(
        async {
            let level = level_from(&body)?;
            r.store()
                .registry_set_config(None, &level.to_string())
                .await?;
            Ok(ok(json!({"compatibility": level.to_string()})))
        }
        .await,
    )
}

async fn get_subject_config(
    State(r): State<Embedded>,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
) -> Response {
    reply(
        async {
            match r.store().registry_config(Some(&subject)).await? {
                Some(level) => Ok(ok(json!({"compatibilityLevel": level}))),
                None if flag(&f.default_to_global) => Ok(ok(
                    json!({"compatibilityLevel": r.level(&subject).await?.to_string()}),
                )),
                None => Err(RegistryError::NoSubjectConfig(subject)),
            }
        }
        .await,
    )
}

async fn put_subject_config(
    State(r): State<Embedded>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    reply(
        async {
            validate_subject(&subject)?;
            let level = level_from(&body)?;
            r.store()
                .registry_set_config(Some(&subject), &level.to_string())
                .await?;
            Ok(ok(json!({"compatibility": level.to_string()})))
        }
        .await,
    )
}

async fn delete_subject_config(State(r): State<Embedded>, Path(subject): Path<String>) -> Response {
    reply(
        async {
            match r.store().registry_delete_config(&subject).await? {
                Some(level) => Ok(ok(json!({"compatibilityLevel": level}))),
                None => Err(RegistryError::NoSubjectConfig(subject)),
            }
        }
        .await,
    )
}
