-- The limits a plugin asked for at upload (JSON, keys as in [plugin-limits]); '{}' for none.
ALTER TABLE plugins ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
