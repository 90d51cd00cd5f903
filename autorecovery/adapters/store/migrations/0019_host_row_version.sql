-- A settled host is told by numbers, not by hashing its row every tick.
-- hosts.row_version: moved on by every write of a column an evaluation reads, that is every
-- column but the evaluation's own bookkeeping (hosts._NOT_EVALUATED in the hosts repository:
-- eval_key, eval_until, eval_code, eval_silent, last_decision_at) and this one, when the row
-- changes. A row changed and changed back gets a new version all the same: its host is evaluated
-- once more, never once less. Writing only the bookkeeping (each evaluation does) fires nothing.
-- A column added to hosts later must be added to the trigger's list: a contract test
-- (test_every_column_an_evaluation_reads_moves_the_row_version) fails until it is.
ALTER TABLE hosts ADD COLUMN row_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION hosts_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.row_version := OLD.row_version + 1;
    RETURN NEW;
END $$;

-- Named to fire after any other BEFORE UPDATE trigger on hosts (they fire in name order, and
-- hosts_cleanness sets clean_since and last_clean_at), so that it sees the row as written.
CREATE TRIGGER zz_hosts_row_version
    BEFORE UPDATE OF id, cluster_id, agent_url, status, reason, detail, autorecovery,
        status_changed_at, fence, last_decision, last_decision_detail, created_at, failures,
        next_attempt_at, quarantined_at, quarantine_reason, holds_cleared_at, subject,
        error_until, agent_fence_pending, adopt, clean_since, last_clean_at, init_hold_until,
        fence_push_failures, fence_push_after, last_decision_clean, agent_hold,
        agent_hold_detail, agent_state_id
    ON hosts FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION hosts_row_version();
