CREATE TABLE devices (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL UNIQUE,
    model       TEXT NOT NULL,
    region      TEXT NOT NULL,
    labels      TEXT NOT NULL,
    groups      TEXT NOT NULL,
    version     TEXT NOT NULL,
    status      TEXT NOT NULL,
    last_seen   INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX devices_model_region ON devices (model, region);
