"""Fencing tokens: the bounds every fence keeps, on the product's side and the agent's.

A fence is an integer 1 ≤ n ≤ 2⁶³−1 (PostgreSQL's ``bigint``). The product issues them; an
agent that claims one the product never issued is not followed (SPEC Appendix B).
"""

from __future__ import annotations

MIN_FENCE = 1
#: PostgreSQL's bigint maximum: no fence beyond it is ever issued, stored or accepted.
MAX_FENCE = 2**63 - 1
#: The reason a host is held when its agent claims a fence the product never issued.
AGENT_FENCE_AHEAD = "agent_fence_ahead"


def is_fence(value: object) -> bool:
    """True for an int (not a bool) within 1 … 2⁶³−1."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_FENCE <= value <= MAX_FENCE


def next_fence(fence: int) -> int:
    """The fence after ``fence``, never past ``MAX_FENCE`` (the caller must not issue it twice)."""
    return min(fence + 1, MAX_FENCE)


def is_agent_ahead(claimed: int | None, issued: int, refused: int | None = None) -> bool:
    """True when an agent's claimed highest fence is one the product never issued.

    ``issued`` is the product's counter for the host (the highest fence it ever issued). With
    ``refused`` (the agent answered ``stale_fence`` to that fence, so it holds a higher one):
    while the counter is still ``refused``, nothing higher was ever issued, so the agent is
    ahead whatever it claims. Otherwise it is ahead when its claim is not a fence at all or is
    above the counter (a claim that is no number is read as nothing).
    """
    if refused is not None and issued <= refused:
        return True
    return claimed is not None and claimed > issued
