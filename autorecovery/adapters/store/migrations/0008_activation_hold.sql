-- A host whose init outcome was not seen (a v1 agent has no status route) gets no new init
-- before this time: the init may still be running on it.
ALTER TABLE hosts ADD COLUMN init_hold_until timestamptz;
