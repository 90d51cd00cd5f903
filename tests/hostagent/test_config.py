"""The agent's config: the shipped example is valid, mistakes are named by their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostagent.config import load_config, parse_config
from models.errors import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "agent.toml.example"
BASE = {"host_id": "h-1", "state_dir": "state", "token_file": "token"}


def test_the_shipped_example_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.libvirt.uri == "qemu:///system"
    assert config.required_networks() == {"ovirtmgmt", "vmnet"}
    assert config.required_storage_domains() == {"sd-1"}
    assert config.server.tls_key_file == Path("/etc/autorecovery/agent.key")


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text('host_id = "h-1"\nstate_dir = "st"\ntoken_file = "/abs/token"\n')
    config = load_config(tmp_path / "agent.toml")
    assert config.state_dir == tmp_path / "st" and config.token_file == Path("/abs/token")
    assert config.server.port == 8901 and config.server.bind == "127.0.0.1"


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ({"host_id": ""}, "host_id", "at least 1"),
        ({"server": {"port": "8901"}}, "server.port", "valid integer"),
        ({"server": {"port": 70000}}, "server.port", "less than or equal"),
        ({"server": {"tls_cert_file": "c.pem"}}, "server", "set both or neither"),
        ({"servr": {}}, "servr", "Extra inputs"),
        ({"networks": {"mgmt": {}}}, "networks.mgmt", "libvirt_network, interface, or both"),
        ({"networks": {"mgmt": {"interface": "eth 0"}}}, "networks.mgmt.interface", "pattern"),
        ({"storage_domains": {"sd-1": {}}}, "storage_domains.sd-1.pool", "required"),
        ({"init": {"storage_domains": ["sd-9"]}}, "init.storage_domains", "sd-9"),
        ({"probes": {"cpu_flags_from": "bios"}}, "probes.cpu_flags_from", "cpuinfo"),
        ({"probes": {"storage_timeout_s": 0}}, "probes.storage_timeout_s", "greater than 0"),
    ],
)
def test_a_mistake_names_its_key(extra: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_config({**BASE, **extra}, Path("/etc/autorecovery"))
    assert caught.value.field == key and words in caught.value.message


def test_an_unreadable_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("host_id = \n")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
