"""The agent's configuration: one TOML file, validated at start with errors that name the key.

Relative paths are taken from the config file's folder. See deploy/agent.toml.example.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from models.errors import InvalidInput

Name = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    """``[server]``: where and how the agent listens."""

    bind: StrictStr = "127.0.0.1"
    port: StrictInt = Field(default=8901, ge=0, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    max_body_bytes: StrictInt = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    #: A connection gets this long to send a whole request head (slow clients are closed).
    header_timeout_s: StrictFloat = Field(default=10.0, gt=0, le=300)
    #: An idle connection is kept this long for the next request: longer than the product's tick
    #: interval, so each tick's pull reuses the connection of the last one.
    keepalive_s: StrictFloat = Field(default=75.0, gt=0, le=3600)
    #: Connections at once (lowered to fit the process's open-file limit).
    max_connections: StrictInt = Field(default=512, ge=16, le=65536)
    #: Connections of one client address still sending their request head (past it, its oldest goes).
    max_pending_per_client: StrictInt = Field(default=32, ge=1, le=65536)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        return self


class LibvirtConfig(_Section):
    """``[libvirt]``: the connection URI."""

    uri: StrictStr = "qemu:///system"
    #: A report waits this long for libvirt; past it, kvm reads down (libvirtd hung).
    timeout_s: StrictFloat = Field(default=5.0, gt=0, le=60)


class ProbesConfig(_Section):
    """``[probes]``: where the host's files are (tests point them at temporary ones)."""

    kvm_device: Path = Path("/dev/kvm")
    #: The user QEMU runs as (qemu.conf ``user``: ``libvirt-qemu`` on Debian, ``qemu`` on Fedora):
    #: kvm is usable only if this user may open ``kvm_device`` read-write. Empty: not checked.
    qemu_user: StrictStr = "libvirt-qemu"
    #: kvm needs one of these CPU flags (hardware virtualization); empty: not checked.
    cpu_virt_flags: list[Name] = ["vmx", "svm"]
    cpuinfo: Path = Path("/proc/cpuinfo")
    cpu_flags_from: Literal["cpuinfo", "libvirt"] = "cpuinfo"
    meminfo: Path = Path("/proc/meminfo")
    sys_class_net: Path = Path("/sys/class/net")
    storage_timeout_s: StrictFloat = Field(default=2.0, gt=0, le=60)
    #: The report answers at once from the last look; a look is taken this often in the background.
    period_s: StrictFloat = Field(default=2.0, gt=0, le=60)


class NetworkConfig(_Section):
    """``[networks.<name>]``: the libvirt network and/or host interface behind a network."""

    libvirt_network: Name | None = None
    interface: Name | None = None

    @model_validator(mode="after")
    def _something(self) -> NetworkConfig:
        if self.libvirt_network is None and self.interface is None:
            raise ValueError("give libvirt_network, interface, or both")
        return self


class StorageDomainConfig(_Section):
    """``[storage_domains.<id>]``: the libvirt storage pool behind a storage domain."""

    pool: Name


class InitConfig(_Section):
    """``[init]``: what an init must bring up and check (default: every network and domain)."""

    networks: list[Name] | None = None
    storage_domains: list[Name] | None = None
    cpu_flags: list[Name] = []
    min_version: StrictStr = "0"
    keep_results: StrictInt = Field(default=256, ge=1, le=100_000)


class TestingConfig(_Section):
    """``[testing]``: hooks for tests only; never set them on a real host."""

    init_delay_s: StrictFloat = Field(default=0.0, ge=0, le=3600)


class AgentConfig(_Section):
    """The whole file."""

    host_id: Name
    state_dir: Path
    token_file: Path
    version: StrictStr | None = None
    server: ServerConfig = ServerConfig()
    libvirt: LibvirtConfig = LibvirtConfig()
    probes: ProbesConfig = ProbesConfig()
    networks: dict[Name, NetworkConfig] = {}
    storage_domains: dict[Name, StorageDomainConfig] = {}
    init: InitConfig = InitConfig()
    testing: TestingConfig = TestingConfig()

    @model_validator(mode="after")
    def _init_names_known(self) -> AgentConfig:
        for key, known in (("networks", self.networks), ("storage_domains", self.storage_domains)):
            unknown = sorted(set(getattr(self.init, key) or ()) - set(known))
            if unknown:
                raise InvalidInput(f"init.{key}", f"names {', '.join(unknown)}, not configured in [{key}.*]")
        return self

    def required_networks(self) -> frozenset[str]:
        """The networks an init must bring up."""
        return frozenset(self.networks if self.init.networks is None else self.init.networks)

    def required_storage_domains(self) -> frozenset[str]:
        """The storage domains an init must connect."""
        return frozenset(
            self.storage_domains if self.init.storage_domains is None else self.init.storage_domains
        )


_PATH_KEYS = {
    "": ("state_dir", "token_file"),
    "server": ("tls_cert_file", "tls_key_file"),
    "probes": ("kvm_device", "cpuinfo", "meminfo", "sys_class_net"),
}


def _resolve_paths(data: dict[str, object], base: Path) -> None:
    """Make relative path strings relative to the config file's folder."""
    for section, keys in _PATH_KEYS.items():
        table = data.get(section, {}) if section else data
        if not isinstance(table, dict):
            continue
        for key in keys:
            value = table.get(key)
            if isinstance(value, str):
                table[key] = str(base / value) if value else value


def parse_config(data: dict[str, object], base: Path) -> AgentConfig:
    """Validate a decoded config.

    Raises:
        InvalidInput: naming the first key that is missing, unknown or wrong.
    """
    _resolve_paths(data, base)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "config"
        raise InvalidInput(key, first["msg"].removeprefix("Value error, ")) from None


def load_config(path: Path) -> AgentConfig:
    """Read and validate the agent's TOML file.

    Raises:
        InvalidInput: the file cannot be read, is not TOML, or a key is wrong (named).
    """
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise InvalidInput("--config", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput("--config", f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, path.resolve().parent)
