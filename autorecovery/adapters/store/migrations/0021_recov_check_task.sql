-- The check step that may act next on a sent host activation (issue 14): each step that sends
-- the next check writes its task id here, and a check message whose task id is not this one is
-- superseded (it ends as a duplicate, writing nothing). The housekeeping may then re-send a
-- check step whose message was lost without ever running two chains of checks: its re-send
-- takes the token. NULL: any check step may act (records from before this migration).
ALTER TABLE activations ADD COLUMN check_task_id text;
