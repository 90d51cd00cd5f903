"""autorecovery: bring failed hypervisor hosts back, safely and explainably."""

__version__ = "0.1.0"
