"""The host's last look, taken in the background: ``GET /report`` answers from it at once.

A look is bounded probe by probe (libvirt within ``libvirt.timeout_s``, each storage path within
``probes.storage_timeout_s``), so a hung libvirtd or mount makes the next snapshot say so
("libvirt … does not answer within 5 s") instead of making a report slow. A look that fails
outright leaves the last snapshot in place: its ``reported_at`` ages, and the product's own
staleness rule takes over. An init's own fresh look replaces the snapshot when it is newer, so
the report right after an init shows what the init did.
"""

from __future__ import annotations

import logging
import threading

from hostagent.host import HostView, Observation

log = logging.getLogger(__name__)


class Snapshots:
    """Keeps the newest look at the host; ``start`` takes one every ``period_s`` in a thread."""

    def __init__(self, host: HostView, period_s: float) -> None:
        self.host = host
        self.period_s = period_s
        self._lock = threading.Lock()
        self._latest: Observation | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        host.on_look = self.offer

    def latest(self) -> Observation:
        """The newest look; the first call before any look takes one (bounded) at once."""
        with self._lock:
            latest = self._latest
        return latest if latest is not None else self.refresh()

    def refresh(self) -> Observation:
        """Take a look now, keep it if it is the newest, and return the newest."""
        self.offer(self.host.observe("report"))
        with self._lock:
            assert self._latest is not None
            return self._latest

    def offer(self, look: Observation) -> None:
        """Keep ``look`` unless a newer one is already kept."""
        with self._lock:
            if self._latest is None or look.at >= self._latest.at:
                self._latest = look

    def start(self) -> None:
        """Take the first look, then keep looking every ``period_s`` until ``stop``."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop looking (a look under way is left to end on its own: its thread is a daemon)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.refresh()
            except Exception:  # the thread's boundary: the last snapshot stays and ages
                log.exception("host %s: a look at the host failed", self.host.config.host_id)
