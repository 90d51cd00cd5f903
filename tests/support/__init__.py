"""Helpers for the integration suite: real servers, a real worker, the simulator."""
