-- Onboarding: a registered host is 'unassigned' until its first report (not non_responsive,
-- which reads like a dead agent), and may be adopted: its first clean report marks it up
-- without an init (an existing, healthy fleet brought under management).

ALTER TABLE hosts ADD COLUMN adopt boolean NOT NULL DEFAULT false;

ALTER TABLE hosts
    ALTER COLUMN status SET DEFAULT 'unassigned',
    ALTER COLUMN reason SET DEFAULT NULL;

-- Hosts registered before this migration that never reported are unassigned too.
UPDATE hosts h SET status = 'unassigned', reason = NULL
WHERE h.status = 'non_responsive' AND h.reason = 'no_report'
  AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.host_id = h.id);
