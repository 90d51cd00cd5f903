"""``autorecovery hosts enroll ID --out DIR``: what one host's agent needs, written for its admin.

The host's own token (HMAC of the product key and the host id, mode 0600), the CA the product
verifies agents with (when set), and an example config naming the host. Run it again after a
key rotation: the same files with the new key's token (docs/agent.md, "Rotation").
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
from pathlib import Path

from models.credentials import host_token
from models.errors import InvalidInput

EXAMPLE = """\
# autorecovery agent of host {host_id}: /etc/autorecovery/agent.toml (see deploy/agent.toml.example).
host_id = "{host_id}"
state_dir = "/var/lib/autorecovery-agent"
# This host's own token (mode 0600, owned by the agent's user): it opens this agent only.
token_file = "/etc/autorecovery/agent.token"

[server]
bind = "0.0.0.0"
port = 8901
# The product sends the token only over https (or to loopback): give the agent a certificate
# the product's CA ({ca}) verifies, for the name or address in the host's agent_url.
tls_cert_file = "/etc/autorecovery/agent.crt"
tls_key_file = "/etc/autorecovery/agent.key"
"""


def add_enroll_command(hsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``hosts enroll``."""
    enroll = hsub.add_parser(
        "enroll",
        help="write what a host's agent needs (its own token, the CA, an example config); "
        "reads AUTORECOVERY_AGENT_KEY_FILE, calls no API",
    )
    enroll.add_argument("host_id", metavar="ID")
    enroll.add_argument("--out", type=Path, required=True, help="directory to write into (created, 0700)")
    enroll.set_defaults(handler=cmd_enroll)
    rotate = hsub.add_parser(
        "rotate-agent-key",
        help="start a key rotation: the current agent key becomes the previous one (still accepted "
        "after a 401), a new random key takes its place; re-enrol hosts at your pace",
    )
    rotate.add_argument(
        "--key-file", type=Path, required=True, help="the file AUTORECOVERY_AGENT_KEY_FILE names"
    )
    rotate.set_defaults(handler=cmd_rotate_key)


def enroll(host_id: str, out: Path, key: bytes, ca_file: Path | None) -> list[Path]:
    """Write the host's token (0600), the CA (if any) and an example config into ``out``."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = out / "agent.token"
    tmp = out / ".agent.token.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(host_token(key, host_id) + "\n")
    os.replace(tmp, token)
    written = [token]
    if ca_file is not None:
        written.append(Path(shutil.copyfile(ca_file, out / "agents-ca.pem")))
    config = out / "agent.toml.example"
    config.write_text(EXAMPLE.format(host_id=host_id, ca=ca_file or "the system's CAs"))
    written.append(config)
    return written


def cmd_enroll(args: argparse.Namespace) -> int:
    """Enrol one host: exit 2 without a product key."""
    from autorecovery.settings import load_settings

    settings = load_settings()
    credentials = settings.agent_credentials()
    if credentials.key is None:
        raise InvalidInput("AUTORECOVERY_AGENT_KEY_FILE", "is not set: per-host tokens need the product key")
    for path in enroll(args.host_id, args.out, credentials.key, settings.agent_ca_file):
        print(path)
    print(f"copy these to host {args.host_id} (token to /etc/autorecovery/agent.token, mode 0600)")
    return 0


def rotate_key(key_file: Path) -> Path:
    """Move ``key_file`` to ``<key_file>.previous`` and write a new random key (0600) in its place."""
    previous = key_file.with_name(key_file.name + ".previous")
    if not key_file.is_file():
        raise InvalidInput("--key-file", f"{key_file} does not exist")
    tmp = key_file.with_name(f".{key_file.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    os.replace(key_file, previous)
    os.replace(tmp, key_file)
    return previous


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Rotate the product's agent key in place; say what to set and restart."""
    previous = rotate_key(args.key_file)
    print(f"new key in {args.key_file}; the old one in {previous}")
    print(f"set AUTORECOVERY_AGENT_PREVIOUS_KEY_FILE={previous} and restart the product's processes;")
    print("then `autorecovery hosts enroll ID` each host and restart its agent; when all are done,")
    print("unset AUTORECOVERY_AGENT_PREVIOUS_KEY_FILE and delete the previous key (docs/agent.md, Rotation)")
    return 0
