"""Every audit event name the product writes, each with what it means: the one list.

``autorecovery audit --events`` prints it, the API refuses an ``event`` filter that is not in it,
and a unit test scans the code for the events written and checks that each is here. A new event
is a new line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from models.domain import IN_FLIGHT_STATES, ActivationState

_EVENTS = {
    # Activations (host or storage domain): the record's life, one entry per step.
    "activation_queued": "an activation was queued (automatic, or asked by an admin)",
    "activation_forced": "an admin forced an init although the host's fresh report showed problems",
    "activation_refused": "an admin's activation was refused: another holds the host, or it has problems",
    "activation_not_enqueued": "the broker did not take a queued activation (it was not sent)",
    "activation_resent": "a queued activation that no worker started in time was sent again",
    "activation_check_resent": "a sent activation with no step for a while (its check message lost) "
    "got a new check step, which supersedes any other",
    "activation_started": "a worker took the lock and started the activation under its fence",
    "activation_succeeded": "the activation ended with the host up (the storage domain active)",
    "activation_failed": "the activation ended and the host is not up; the reason says why",
    "activation_skipped": "the activation was not run (host already up, lock busy, problems back, ...)",
    "activation_abandoned": "an activation gave no result in time and was taken from its holder",
    "init_sent": "the init went to the agent, its outcome not known yet: the record holds the host",
    "connect_sent": "a storage domain's connect went to a host, its answer unseen: the record holds it",
    "init_held": "no init is sent to the host until an earlier init's outcome is known",
    "init_outcome_asked": "the agent was asked how an init whose answer was lost ended",
    "agent_fence_ahead": "security event: the host's agent claimed a fence the product never issued; "
    "the host is held until an admin clears it",
    "agent_fence_pushed": "the product told a new or lagging agent state its fence before an init",
    "agent_hold_cleared": "an admin cleared an agent_fence_ahead hold (the agent was told the fence)",
    # Hosts.
    "host_registered": "a host was registered (unassigned until its first report)",
    "host_deleted": "a host was forgotten (its audit entries stay)",
    "agent_url_changed": "a host's agent URL was changed",
    "status_changed": "a host or storage domain changed status; details say from, to and why",
    "autorecovery_enabled": "a host's or storage domain's autorecovery was turned on",
    "autorecovery_disabled": "a host's or storage domain's autorecovery was turned off",
    "report_rejected": "a report was refused (bad field, wrong host); nothing of it was stored",
    "backoff": "an automatic activation failed: the next one waits (details say how long)",
    "charged": "a VM failed on the host and then started on another: one charge",
    "charges_cleared": "a host back from error had its charges forgotten",
    "quarantined": "a flapping host was quarantined: no automatic activation until cleared",
    "quarantine_cleared": "an admin cleared a host's quarantine (and its backoff)",
    "backoff_reset": "an admin forgot a host's failed automatic activations",
    # Clusters and storage domains.
    "cluster_registered": "a cluster was created",
    "cluster_updated": "a cluster's requirements were replaced",
    "cluster_deleted": "a cluster with no host was deleted",
    "storage_domain_registered": "a storage domain was first named by a cluster",
    # Safety.
    "paused": "automatic activation was paused, fleet-wide or for a cluster",
    "resumed": "a pause was lifted by an admin",
    "pause_expired": "a pause ended by itself at its expiry",
    # Housekeeping.
    "pruned": "history past its retention was deleted; details count the rows",
}

#: Audit event names and what each means, in the order above.
AUDIT_EVENTS: Mapping[str, str] = MappingProxyType(_EVENTS)

#: Activation states that close an activation.
CLOSING_STATES = tuple(s for s in ActivationState if s not in IN_FLIGHT_STATES)

#: The event that audits an activation's close, by its closing state (``done``: it succeeded).
CLOSING_EVENTS: Mapping[str, str] = MappingProxyType(
    {
        s.value: "activation_succeeded" if s is ActivationState.DONE else f"activation_{s.value}"
        for s in CLOSING_STATES
    }
)


def is_audit_event(name: str) -> bool:
    """True when ``name`` is an event the product writes."""
    return name in AUDIT_EVENTS
