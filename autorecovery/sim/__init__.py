"""Fleet simulator: many simulated hosts on agent protocol v1, with faults and a call record."""

from autorecovery.sim.client import SimulatorClient, SimulatorError
from autorecovery.sim.faults import Fault, FaultKind, FaultSpec
from autorecovery.sim.fleet import FenceRefused, Fleet, SimCluster, SimHost
from autorecovery.sim.record import ConnectCall, InitCall
from autorecovery.sim.runner import (
    RunningSimulator,
    SimulatorStartError,
    serve,
    start_in_thread,
    stop,
)
from autorecovery.sim.server import create_app

__all__ = [
    "ConnectCall",
    "Fault",
    "FaultKind",
    "FaultSpec",
    "FenceRefused",
    "Fleet",
    "InitCall",
    "RunningSimulator",
    "SimCluster",
    "SimHost",
    "SimulatorClient",
    "SimulatorError",
    "SimulatorStartError",
    "create_app",
    "serve",
    "start_in_thread",
    "stop",
]
