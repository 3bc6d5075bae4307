-- Which server orchestrates a deployment, until when (milliseconds): every step of the
-- orchestrator renews its lease in its own transaction, and another server takes over only
-- once it has run out.
CREATE TABLE deployment_leases (
    deployment_id INTEGER PRIMARY KEY REFERENCES deployments (id),
    owner         TEXT NOT NULL,
    expires_at    INTEGER NOT NULL
);
