-- The W3C trace context of the request that started a deployment, when the server records
-- traces: the deployment's spans and its devices' are of that trace.
ALTER TABLE deployments ADD COLUMN trace_parent TEXT;
