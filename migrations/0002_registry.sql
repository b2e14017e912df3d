-- Schema registry (Confluent-compatible). Schema ids are global and content-addressed: the same
-- normalized schema text registered under two subjects gets one id. Schema rows are never
-- deleted, so messages already in Kafka stay decodable after a subject is hard-deleted.

CREATE TABLE registry_schemas (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    schema_type TEXT    NOT NULL DEFAULT 'AVRO',
    -- Normalized text (compact JSON, sorted keys): both what is served and the identity.
    schema      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    UNIQUE (schema_type, schema)
);

CREATE TABLE registry_versions (
    subject    TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    schema_id  INTEGER NOT NULL REFERENCES registry_schemas (id),
    -- Soft-deleted versions are hidden but keep their number; hard delete removes the row.
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (subject, version)
);
CREATE INDEX registry_versions_by_schema ON registry_versions (schema_id);

-- Compatibility level; the row with subject '' is the global level (subjects are never empty).
CREATE TABLE registry_config (
    subject       TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL CHECK (compatibility IN ('NONE','BACKWARD','BACKWARD_TRANSITIVE',
                         'FORWARD','FORWARD_TRANSITIVE','FULL','FULL_TRANSITIVE'))
);
