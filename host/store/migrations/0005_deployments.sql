ALTER TABLE devices ADD COLUMN slots TEXT;
ALTER TABLE devices ADD COLUMN health TEXT;
CREATE TABLE deployments (
    id              INTEGER PRIMARY KEY,
    firmware_id     INTEGER NOT NULL REFERENCES firmware (id),
    device_model    TEXT NOT NULL,
    strategy        TEXT NOT NULL,
    strategy_config TEXT NOT NULL,
    health_policy   TEXT NOT NULL,
    health_sha256   TEXT,
    health_config   TEXT NOT NULL,
    device_timeout  INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    retry_backoff   INTEGER NOT NULL,
    state           TEXT NOT NULL,
    current_wave    INTEGER NOT NULL DEFAULT 0,
    waves           INTEGER NOT NULL,
    reason          TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deployments_state ON deployments (state);
CREATE TABLE waves (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id),
    idx           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    mode          TEXT NOT NULL,
    gate          TEXT NOT NULL,
    max_in_flight INTEGER,
    started_at    INTEGER,
    settled_at    INTEGER,
    PRIMARY KEY (deployment_id, idx)
);
CREATE TABLE assignments (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id),
    kind          TEXT NOT NULL,
    wave          INTEGER NOT NULL,
    device_id     TEXT NOT NULL,
    mode          TEXT NOT NULL,
    firmware_id   INTEGER NOT NULL REFERENCES firmware (id),
    from_version  TEXT NOT NULL,
    state         TEXT NOT NULL,
    outcome       TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    INTEGER,
    deadline      INTEGER,
    reason        TEXT,
    updated_at    INTEGER NOT NULL,
    UNIQUE (deployment_id, kind, wave, device_id)
);
CREATE INDEX assignments_device ON assignments (device_id, outcome);
CREATE INDEX assignments_wave ON assignments (deployment_id, kind, wave, state);
CREATE TABLE device_locks (
    device_id     TEXT PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id)
);
CREATE TABLE decisions (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id),
    wave          INTEGER NOT NULL,
    policy        TEXT NOT NULL,
    config        TEXT NOT NULL,
    stats         TEXT NOT NULL,
    samples       TEXT NOT NULL,
    verdict       TEXT NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX decisions_deployment ON decisions (deployment_id, id);
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id),
    device_id     TEXT,
    message       TEXT NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX events_deployment ON events (deployment_id, id);
