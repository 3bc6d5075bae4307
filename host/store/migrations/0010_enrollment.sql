-- A device that enrolled itself keeps the Ed25519 public key it proves itself with.
ALTER TABLE devices ADD COLUMN public_key TEXT;
