"""The monitoring tick: a coordinator, batches any worker process runs, and one closing step."""

from autorecovery.services.monitoring.batch import AUTO_ACTOR
from autorecovery.services.monitoring.config import (
    BatchSender,
    BatchSpec,
    TickConfig,
    TickResult,
    is_quiet,
    needs_pull,
)
from autorecovery.services.monitoring.service import MonitoringService

__all__ = [
    "AUTO_ACTOR",
    "BatchSender",
    "BatchSpec",
    "MonitoringService",
    "TickConfig",
    "TickResult",
    "is_quiet",
    "needs_pull",
]
