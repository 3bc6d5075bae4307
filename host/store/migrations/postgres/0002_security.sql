-- Anonymous refusals are counted, one entry per source and minute; the timestamp of the last
-- claim a device made its credential with, so each claim is used once.
ALTER TABLE audit ADD COLUMN count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE devices ADD COLUMN last_claim_at BIGINT;
