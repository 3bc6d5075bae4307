CREATE TABLE device_groups (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    members    TEXT,
    filter     TEXT,
    created_at INTEGER NOT NULL,
    CHECK ((members IS NULL) <> (filter IS NULL))
);
