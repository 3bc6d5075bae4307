-- Operator API tokens (only their SHA-256 is kept), the audit log, and each device's credential.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    sha256       TEXT NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    token_id INTEGER,
    source   TEXT,
    action   TEXT NOT NULL,
    object   TEXT,
    status   INTEGER NOT NULL
);
CREATE INDEX audit_at ON audit (at);
-- The audit log is append-only: no statement may change or remove a row.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
ALTER TABLE devices ADD COLUMN token_sha256 TEXT;
CREATE UNIQUE INDEX devices_token ON devices (token_sha256);
