-- A wave's counts by outcome (read every orchestrator tick) come from the index alone.
DROP INDEX assignments_wave;
CREATE INDEX assignments_wave ON assignments (deployment_id, kind, wave, state, outcome);
