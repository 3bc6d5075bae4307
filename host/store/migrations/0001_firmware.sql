CREATE TABLE firmware (
    id               INTEGER PRIMARY KEY,
    device_model     TEXT NOT NULL,
    version          TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    size             INTEGER NOT NULL,
    key_id           TEXT NOT NULL,
    signature        TEXT NOT NULL,
    security_counter INTEGER NOT NULL,
    release_notes    TEXT NOT NULL,
    deprecated       INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    UNIQUE (device_model, version)
);
