"""Fleet simulator: many simulated hosts on agent protocol v2 (or v1), faults and a call record."""

from harness.sim.client import SimulatorClient, SimulatorError
from harness.sim.faults import Fault, FaultKind, FaultSpec
from harness.sim.fleet import Fleet, SimCluster, SimHost
from harness.sim.record import ConnectCall, InitCall
from harness.sim.runner import (
    RunningSimulator,
    SimulatorStartError,
    serve,
    start_in_thread,
    stop,
)
from harness.sim.server import create_app

__all__ = [
    "ConnectCall",
    "Fault",
    "FaultKind",
    "FaultSpec",
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
