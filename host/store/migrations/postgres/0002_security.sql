-- Anonymous refusals are counted, one entry per source, route and minute; the timestamp of the last
-- claim a device made its credential with, so each claim is used once.
ALTER TABLE audit ADD COLUMN count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE devices ADD COLUMN last_claim_at BIGINT;
-- Devices by label: a list filtered by a label reads the devices that have it, instead of
-- every device's labels (a viewer's lists must not cost a scan of the fleet each).
CREATE TABLE device_labels (
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (key, value, device_id)
);
INSERT INTO device_labels (key, value, device_id)
    SELECT j.key, j.value, d.device_id FROM devices d, jsonb_each_text(d.labels::jsonb) j;
