-- An agent that claims a fence the product never issued is a security event: the host is held
-- (agent_hold = 'agent_fence_ahead', with its detail) until an admin clears it. agent_state_id
-- is the agent state (report field agent.state_id) that last learnt the product's fence.
ALTER TABLE hosts ADD COLUMN agent_hold text;
ALTER TABLE hosts ADD COLUMN agent_hold_detail text;
ALTER TABLE hosts ADD COLUMN agent_state_id text;
ALTER TABLE hosts ADD CONSTRAINT hosts_fence_bounded CHECK (fence >= 0) NOT VALID;
