"""A small synchronous client for the simulator's control interface (tests, demos, CLI)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from models.errors import PermanentError


class SimulatorError(PermanentError):
    """The simulator refused a control request; carries the status code and body."""

    def __init__(self, status_code: int, body: object) -> None:
        super().__init__(f"simulator answered {status_code}: {body}")
        self.status_code = status_code
        self.body = body


class SimulatorClient:
    """Call ``/control/*`` on a running simulator.

    Args:
        base_url: the simulator's base URL, e.g. ``http://127.0.0.1:8900``.
        timeout_s: per-request timeout.
        client: an httpx client to use instead (e.g. FastAPI's ``TestClient``); not closed here.
    """

    def __init__(self, base_url: str, timeout_s: float = 10.0, client: httpx.Client | None = None) -> None:
        self._owned = client is None
        self._http = client or httpx.Client(base_url=base_url, timeout=timeout_s)

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owned:
            self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._http.request(method, path, **kwargs)
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise SimulatorError(response.status_code, body)
        if not isinstance(body, dict):
            raise SimulatorError(response.status_code, body)
        return body

    def healthz(self) -> dict[str, Any]:
        """Return the simulator's health and size."""
        return self._call("GET", "/healthz")

    def fleet(self, cluster: str | None = None) -> dict[str, Any]:
        """Return clusters (registration shape) and hosts with agent URLs and active faults."""
        params = {"cluster": cluster} if cluster else None
        return self._call("GET", "/control/fleet", params=params)

    def inject(
        self,
        fault: str,
        *,
        hosts: list[str] | None = None,
        cluster: str | None = None,
        storage_domain: str | None = None,
        all_hosts: bool = False,
        target: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
        seconds: float | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """Inject one fault on the selected hosts; return ``{"fault", "count", "hosts"}``."""
        body: dict[str, Any] = {"fault": fault, "all": all_hosts}
        optional = {
            "hosts": hosts,
            "cluster": cluster,
            "storage_domain": storage_domain,
            "target": target,
            "reason": reason,
            "detail": detail,
            "seconds": seconds,
            "version": version,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._call("POST", "/control/faults", json=body)

    def clear(
        self,
        *,
        hosts: list[str] | None = None,
        cluster: str | None = None,
        storage_domain: str | None = None,
        fault: str | None = None,
        target: str | None = None,
    ) -> dict[str, Any]:
        """Clear faults (all, or one kind/target) on the selected hosts, or on every host."""
        optional = {
            "hosts": hosts,
            "cluster": cluster,
            "storage_domain": storage_domain,
            "fault": fault,
            "target": target,
        }
        body = {k: v for k, v in optional.items() if v is not None}
        return self._call("POST", "/control/clear", json=body)

    def inits(self, host_id: str | None = None) -> list[dict[str, Any]]:
        """Return the recorded init calls, optionally for one host."""
        params = {"host_id": host_id} if host_id else None
        calls: list[dict[str, Any]] = self._call("GET", "/control/inits", params=params)["calls"]
        return calls

    def connects(self, host_id: str | None = None, sd_id: str | None = None) -> list[dict[str, Any]]:
        """Return the recorded storage-domain connect calls, optionally filtered."""
        params = {k: v for k, v in {"host_id": host_id, "sd_id": sd_id}.items() if v}
        calls: list[dict[str, Any]] = self._call("GET", "/control/connects", params=params)["calls"]
        return calls

    def overlaps(self) -> dict[str, Any]:
        """Return overlapping init (``hosts``/``count``) and connect calls."""
        return self._call("GET", "/control/overlaps")

    def set_protocol(
        self,
        protocol: int,
        *,
        hosts: list[str] | None = None,
        cluster: str | None = None,
        storage_domain: str | None = None,
    ) -> dict[str, Any]:
        """Make the selected hosts (none given: every host) speak agent protocol 1 or 2."""
        optional = {"hosts": hosts, "cluster": cluster, "storage_domain": storage_domain}
        body: dict[str, Any] = {"protocol": protocol}
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._call("POST", "/control/protocol", json=body)

    def reset_record(self, fences: bool = False) -> dict[str, Any]:
        """Forget recorded calls (and, with ``fences``, the highest fences accepted)."""
        return self._call("POST", "/control/reset-record", json={"fences": fences})
