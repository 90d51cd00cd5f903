"""The memory store offers every repository function, with the same parameters.

Semantics are checked by ``tests/contract``, against PostgreSQL too; this only catches a function
added to a repository module and not to the fake (or a parameter renamed) without a database.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from types import ModuleType

import pytest

from autorecovery.adapters.store import PG_REPOS, Repos
from tests.fakes import MemoryDatabase, memory_repos

#: Every repository the services reach, by its name in ``Repos``: a new one needs a fake too.
MODULES: dict[str, ModuleType] = {f.name: getattr(PG_REPOS, f.name) for f in fields(Repos)}


def public_functions(module: ModuleType) -> dict[str, object]:
    """The repository's functions: its own, or those its ``__all__`` names (parts re-exported)."""
    exported = set(getattr(module, "__all__", ()))
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isfunction(obj)
        and not name.startswith("_")
        and (obj.__module__ == module.__name__ or name in exported)
    }


def shape(fn: object) -> list[tuple[str, object, object]]:
    params = list(inspect.signature(fn).parameters.values())  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in params]


CASES = [(repo, name) for repo, module in MODULES.items() for name in sorted(public_functions(module))]


def test_pg_repos_bundle_the_store_modules() -> None:
    for name, module in MODULES.items():
        assert isinstance(module, ModuleType)
        assert module.__name__ == f"autorecovery.adapters.store.{name}"


@pytest.mark.parametrize(("repo", "name"), CASES, ids=[f"{r}.{n}" for r, n in CASES])
def test_fake_has_the_same_function(repo: str, name: str) -> None:
    fake = getattr(memory_repos(MemoryDatabase()), repo)
    real_fn = public_functions(MODULES[repo])[name]
    fake_fn = getattr(fake, name, None)
    assert fake_fn is not None, f"tests/fakes lacks {repo}.{name}"
    assert shape(fake_fn) == shape(real_fn)


def test_fake_has_nothing_the_modules_lack() -> None:
    fakes = memory_repos(MemoryDatabase())
    for repo, module in MODULES.items():
        offered = {n for n in dir(getattr(fakes, repo)) if not n.startswith("_")}
        assert offered == set(public_functions(module)), repo
