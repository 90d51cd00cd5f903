-- Numbered 15 (issue 15) to stay clear of the migrations parallel branches add (0009, 0010, ...).
-- The objects a host's agent says its own init repairs (agent protocol v2 ``repairable``: keys
-- such as ``storage_domain:sd-1`` or ``network:mgmt``), kept with the latest report so that the
-- plan, "why not recovered" and storage domain reactivation read them as the tick did.
ALTER TABLE reports ADD COLUMN repairable text[] NOT NULL DEFAULT '{}';
