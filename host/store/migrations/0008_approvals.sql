-- Who started a deployment (approvals need someone else), and groups whose deployments need an
-- approval before any device is handed anything.
ALTER TABLE deployments ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE device_groups ADD COLUMN requires_approval INTEGER NOT NULL DEFAULT 0;
