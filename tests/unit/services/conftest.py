"""Fixtures of the service tests: worlds of services over fakes, built by the composition root."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.unit.services import safety_world
from tests.unit.services import world as service_world


@pytest.fixture
def world() -> Iterator[service_world.World]:
    """The services over fakes, every protection open (the safety tests turn them on)."""
    built = service_world.build_world()
    yield built
    built.close()


@pytest.fixture
def make() -> Iterator[Callable[..., safety_world.World]]:
    """Build a world with the tick settings and recovery limits a test needs."""
    built: list[safety_world.World] = []

    def build(*args: object, **kwargs: object) -> safety_world.World:
        built.append(safety_world.build_world(*args, **kwargs))  # type: ignore[arg-type]
        return built[-1]

    yield build
    for w in built:
        w.close()
