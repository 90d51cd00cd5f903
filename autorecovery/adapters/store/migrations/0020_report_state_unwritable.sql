-- Why a host's agent cannot save its state (its fence) when its latest report says so (agent
-- protocol v2 ``state_unwritable``): the tick holds such a host from automatic activation
-- (decision agent_state_unwritable) and ``hosts show`` says why, as the tick read it.
ALTER TABLE reports ADD COLUMN state_unwritable text;
