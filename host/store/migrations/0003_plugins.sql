CREATE TABLE plugins (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    summary       TEXT NOT NULL,
    params_schema TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (name, version)
);
