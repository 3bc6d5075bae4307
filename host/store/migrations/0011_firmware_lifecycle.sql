-- Compatibility: the models a version runs on (its own among them) and the installed versions it
-- may go over; sunset: when it can no longer be deployed; exclusions: the targets a deployment
-- left out, and why.
ALTER TABLE firmware ADD COLUMN installed_versions TEXT;
ALTER TABLE firmware ADD COLUMN sunset_at INTEGER;
CREATE TABLE firmware_models (
    device_model TEXT NOT NULL,
    version      TEXT NOT NULL,
    firmware_id  INTEGER NOT NULL REFERENCES firmware (id),
    PRIMARY KEY (device_model, version)
);
INSERT INTO firmware_models (device_model, version, firmware_id)
    SELECT device_model, version, id FROM firmware;
CREATE INDEX firmware_models_firmware ON firmware_models (firmware_id);
CREATE TABLE deployment_exclusions (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id),
    device_id     TEXT NOT NULL,
    reason        TEXT NOT NULL,
    PRIMARY KEY (deployment_id, device_id)
);
