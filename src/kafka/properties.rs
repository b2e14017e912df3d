//! The client properties file (`FLOWCTL_KAFKA_CONFIG`): the Java-properties file of Kafka client
//! settings that Kafka's own tools take with `--command-config`, applied to every client flowctl
//! makes. This is where TLS and SASL come from (`security.protocol`, `sasl.mechanism`,
//! `sasl.username`, `sasl.password`, `ssl.ca.location`, …).
//!
//! Read once at the edge and checked there, line by line, so a typo is a `file:line` error at
//! start and not a librdkafka failure in the middle of an ingest:
//! - a setting flowctl decides itself (offsets, idempotence, isolation) is refused: changing it
//!   would break exactly-once, and the message says why;
//! - the Java client's `sasl.jaas.config` (what Confluent Cloud's snippets carry) is translated
//!   into librdkafka's `sasl.username` / `sasl.password`; Java-only settings librdkafka has no
//!   counterpart for (serializers, truststores) get the librdkafka setting to use instead;
//! - every other name and value is checked by librdkafka itself.
//!
//! Secret values (passwords, keys, JAAS) never appear in an error, a log line or `Debug`.

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;

/// Settings flowctl sets itself, and why a user's value would be wrong.
const OWNED: &[(&str, &str)] = &[
    (
        "group.id",
        "ingest names its consumer group itself (positions live in the Delta table)",
    ),
    (
        "enable.auto.commit",
        "positions are committed in the same Delta transaction as the rows, never by the client",
    ),
    (
        "enable.auto.offset.store",
        "positions are stored by flowctl with each Delta commit",
    ),
    (
        "auto.offset.reset",
        "a lost position is an error flowctl reports, never a silent jump",
    ),
    (
        "isolation.level",
        "flowctl reads committed records only, as exactly-once needs",
    ),
    (
        "enable.idempotence",
        "flowctl's producers are always idempotent",
    ),
    (
        "acks",
        "flowctl's producers always wait for all in-sync replicas",
    ),
    (
        "request.required.acks",
        "flowctl's producers always wait for all in-sync replicas",
    ),
    (
        "transactional.id",
        "exactly-once lives in the Delta log, not in Kafka transactions",
    ),
    (
        "enable.partition.eof",
        "ingest needs the end-of-partition events to know when a topic is drained",
    ),
    (
        "allow.auto.create.topics",
        "flowctl creates the topics it needs and must not create misspelt ones",
    ),
];

/// Java client settings with no librdkafka counterpart: what to write instead.
const JAVA_ONLY: &[(&str, &str)] = &[
    (
        "key.serializer",
        "flowctl encodes records itself; remove it",
    ),
    (
        "value.serializer",
        "flowctl encodes records itself; remove it",
    ),
    (
        "key.deserializer",
        "flowctl decodes records itself; remove it",
    ),
    (
        "value.deserializer",
        "flowctl decodes records itself; remove it",
    ),
    (
        "ssl.truststore.location",
        "librdkafka reads PEM: use ssl.ca.location with the CA certificate(s)",
    ),
    (
        "ssl.truststore.password",
        "librdkafka reads PEM: use ssl.ca.location with the CA certificate(s)",
    ),
    (
        "ssl.truststore.type",
        "librdkafka reads PEM: use ssl.ca.location with the CA certificate(s)",
    ),
    (
        "sasl.login.callback.handler.class",
        "Java classes do not apply; librdkafka takes sasl.oauthbearer.* settings",
    ),
    (
        "client.dns.lookup",
        "librdkafka resolves every address itself; remove it",
    ),
];

/// Settings a Confluent client file carries for the schema registry, not for Kafka: they are
/// skipped (the registry has its own variables, `FLOWCTL_SCHEMA_REGISTRY_URL` and `_AUTH`).
fn is_registry_setting(key: &str) -> bool {
    key.starts_with("schema.registry.") || key.starts_with("basic.auth.")
}

/// Whether a setting's value is a secret that must never be shown.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "key.pem",
        "oauthbearer.config",
        "token",
        "user.info",
    ]
    .iter()
    .any(|s| k.contains(s))
}

#[derive(Debug, thiserror::Error)]
pub enum PropertiesError {
    #[error("FLOWCTL_KAFKA_CONFIG {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// One setting and the line it came from.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    value: String,
    line: usize,
}

/// The checked settings of a client properties file.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ClientProperties {
    path: Option<PathBuf>,
    entries: Vec<Entry>,
}

/// Names and the file, never values: a password must not reach a log through `{:?}`.
impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                if is_secret(&e.key) {
                    format!("{}=***", e.key)
                } else {
                    format!("{}={}", e.key, e.value)
                }
            })
            .collect();
        f.debug_struct("ClientProperties")
            .field("path", &self.path)
            .field("settings", &shown)
            .finish()
    }
}

impl ClientProperties {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<ClientProperties, PropertiesError> {
        let text = std::fs::read_to_string(path).map_err(|source| PropertiesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ClientProperties::parse(path, &text)
    }

    /// Checks the settings of `text` (the contents of `path`).
    pub fn parse(path: &Path, text: &str) -> Result<ClientProperties, PropertiesError> {
        let invalid = |line: usize, reason: String| PropertiesError::Invalid {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut entries: Vec<Entry> = Vec::new();
        for (line, key, value) in logical_lines(text) {
            if is_registry_setting(&key) {
                continue;
            }
            if let Some((_, why)) = OWNED.iter().find(|(k, _)| *k == key) {
                return Err(invalid(line, format!("`{key}` is set by flowctl: {why}")));
            }
            if let Some((_, instead)) = JAVA_ONLY.iter().find(|(k, _)| *k == key) {
                return Err(invalid(
                    line,
                    format!("`{key}` is a Java client setting: {instead}"),
                ));
            }
            if key == "sasl.jaas.config" {
                let (user, pass) = jaas_credentials(&value).map_err(|r| invalid(line, r))?;
                entries.push(Entry {
                    key: "sasl.username".into(),
                    value: user,
                    line,
                });
                entries.push(Entry {
                    key: "sasl.password".into(),
                    value: pass,
                    line,
                });
                continue;
            }
            let key = match key.as_str() {
                // The Java name; librdkafka spells it with `ssl.` too but takes only none/https.
                "ssl.endpoint.identification.algorithm" if value.is_empty() => {
                    entries.push(Entry {
                        key,
                        value: "none".into(),
                        line,
                    });
                    continue;
                }
                _ => key,
            };
            if let Some(earlier) = entries.iter().find(|e| e.key == key) {
                return Err(invalid(
                    line,
                    format!("`{key}` is set twice (first on line {})", earlier.line),
                ));
            }
            check_with_librdkafka(&key, &value).map_err(|r| invalid(line, r))?;
            entries.push(Entry { key, value, line });
        }
        Ok(ClientProperties {
            path: Some(path.to_path_buf()),
            entries,
        })
    }

    /// The file the settings came from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`, if the file sets it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }

    /// Sets every setting on `config` (except `bootstrap.servers`, which became
    /// [`super::KafkaSettings::bootstrap`]).
    pub fn apply(&self, config: &mut ClientConfig) {
        for e in &self.entries {
            if e.key != "bootstrap.servers" {
                config.set(&e.key, &e.value);
            }
        }
    }

    /// Every secret value of the file, for scrubbing text that might echo one.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| is_secret(&e.key) && !e.value.is_empty())
            .map(|e| e.value.as_str())
    }
}

/// Whether librdkafka accepts `key=value`, with its own words when it does not (a secret's
/// value replaced, should librdkafka quote it).
fn check_with_librdkafka(key: &str, value: &str) -> Result<(), String> {
    let mut c = ClientConfig::new();
    c.set(key, value);
    match c.create_native_config() {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut msg = e.to_string();
            if is_secret(key) && !value.is_empty() {
                msg = msg.replace(value, "***");
            }
            Err(format!("`{key}`: librdkafka refuses it: {msg}"))
        }
    }
}

/// `username="…" password="…"` of a Java `sasl.jaas.config` for the PLAIN or SCRAM login
/// modules (the only ones librdkafka's username/password cover).
fn jaas_credentials(jaas: &str) -> Result<(String, String), String> {
    let module_ok = ["PlainLoginModule", "ScramLoginModule"]
        .iter()
        .any(|m| jaas.contains(m));
    if !module_ok {
        return Err(
            "`sasl.jaas.config` is translated only for the PLAIN and SCRAM login modules; for other \
             mechanisms use librdkafka's sasl.* settings"
                .into(),
        );
    }
    let field = |name: &str| -> Option<String> {
        let start = jaas.find(&format!("{name}=\""))? + name.len() + 2;
        let mut out = String::new();
        let mut chars = jaas[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    };
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err("`sasl.jaas.config` needs username=\"…\" and password=\"…\"".into()),
    }
}

/// The (line, key, value) settings of a Java properties text: `#`/`!` comments, `key=value`,
/// `key: value` or `key value`, a trailing backslash continuing the line, and the escapes
/// `\t \n \r \f \uXXXX` (any other escaped character stands for itself).
fn logical_lines(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let first = raw.trim_start();
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        let mut part = first.to_string();
        loop {
            let trailing = part.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 {
                part.pop();
                logical.push_str(&part);
                match lines.next() {
                    Some((_, next)) => part = next.trim_start().to_string(),
                    None => break,
                }
            } else {
                logical.push_str(&part);
                break;
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push((i + 1, key, value));
    }
    out
}

fn split_key_value(line: &str) -> (String, String) {
    let chars: Vec<char> = line.chars().collect();
    let mut key = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                let (c, used) = unescape(&chars[i + 1..]);
                key.push(c);
                i += 1 + used;
            }
            '=' | ':' | ' ' | '\t' | '\u{c}' => break,
            c => {
                key.push(c);
                i += 1;
            }
        }
    }
    // Whitespace, then at most one `=` or `:`, then whitespace.
    while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\u{c}') {
        i += 1;
    }
    if i < chars.len() && matches!(chars[i], '=' | ':') {
        i += 1;
    }
    while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\u{c}') {
        i += 1;
    }
    let mut value = String::new();
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            let (c, used) = unescape(&chars[i + 1..]);
            value.push(c);
            i += 1 + used;
        } else {
            value.push(chars[i]);
            i += 1;
        }
    }
    (key, value.trim_end().to_string())
}

/// The character an escape after a backslash stands for, and how many characters it used.
fn unescape(rest: &[char]) -> (char, usize) {
    match rest[0] {
        't' => ('\t', 1),
        'n' => ('\n', 1),
        'r' => ('\r', 1),
        'f' => ('\u{c}', 1),
        'u' if rest.len() >= 5 => {
            let hex: String = rest[1..5].iter().collect();
            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                Some(c) => (c, 5),
                None => ('u', 1),
            }
        }
        c => (c, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientProperties, PropertiesError> {
        ClientProperties::parse(Path::new("client.properties"), text)
    }

    #[test]
    fn java_properties_syntax_is_read_as_kafka_tools_read_it() {
        let p = parse(
            "# a comment\n! another\n\nsecurity.protocol=SASL_SSL\nsasl.mechanism : SCRAM-SHA-512\n\
             sasl.username alice\nsasl.password=p\\u00e4ss\\\n   word\nclient.id=flow\\=ctl\n\
             schema.registry.url=https://registry\nbasic.auth.user.info=u:p\n",
        )
        .unwrap();
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(p.get("sasl.username"), Some("alice"));
        assert_eq!(p.get("sasl.password"), Some("pässword"));
        assert_eq!(p.get("client.id"), Some("flow=ctl"));
        assert_eq!(
            p.get("schema.registry.url"),
            None,
            "registry settings are skipped"
        );
        let shown = format!("{p:?}");
        assert!(shown.contains("sasl.password=***"), "{shown}");
        assert!(!shown.contains("pässword"), "{shown}");
    }

    #[test]
    fn settings_flowctl_owns_are_refused_with_the_line_and_why() {
        let e = parse("security.protocol=SSL\nenable.auto.commit=true\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("client.properties:2: `enable.auto.commit` is set by flowctl"),
            "{msg}"
        );
        let e = parse("isolation.level=read_uncommitted\n").unwrap_err();
        assert!(e.to_string().contains("client.properties:1:"), "{e}");
    }

    #[test]
    fn java_only_and_unknown_settings_are_errors_that_say_what_to_use() {
        let e = parse("ssl.truststore.location=/x.jks\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ssl.ca.location"), "{e}");
        let e = parse("\nsecurity.protocoll=SSL\n").unwrap_err().to_string();
        assert!(
            e.starts_with("client.properties:2: `security.protocoll`: librdkafka refuses it"),
            "{e}"
        );
        let e = parse("socket.timeout.ms=soon\n").unwrap_err().to_string();
        assert!(
            e.contains("`socket.timeout.ms`: librdkafka refuses it"),
            "{e}"
        );
        let e = parse("acks=1\nsasl.username=a\nsasl.username=b\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":1:"), "{e}");
        let e = parse("sasl.username=a\nsasl.username=b\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2: `sasl.username` is set twice (first on line 1)"),
            "{e}"
        );
    }

    #[test]
    fn a_jaas_config_becomes_librdkafkas_username_and_password() {
        let p = parse(
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"svc\" password=\"se cr=et\";\n",
        )
        .unwrap();
        assert_eq!(p.get("sasl.username"), Some("svc"));
        assert_eq!(p.get("sasl.password"), Some("se cr=et"));
        let e = parse("sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required;\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("PLAIN and SCRAM"), "{e}");
        assert!(!format!("{p:?}").contains("se cr=et"));
    }

    #[test]
    fn secrets_are_named_by_their_keys() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.jaas.config",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret(k), "{k}");
        }
    }
}
