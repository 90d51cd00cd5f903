"""The ``autorecovery`` command: run everything embedded, migrate, tick, the simulator, the API.

Operator commands (hosts, plan, audit, pause, resume, safety, storage-domains, placement,
vm-runs) talk to the HTTP API; see ``cli.ops`` and docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cli.tools import EXIT_ERROR, EXIT_OK, EXIT_USAGE, add_tool_commands
from models.errors import AutorecoveryError, InvalidInput

if TYPE_CHECKING:
    from autorecovery.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


def _settings() -> Settings:
    from autorecovery.settings import load_settings

    return load_settings()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations to AUTORECOVERY_DATABASE_URL."""
    from autorecovery.adapters.store import migrate
    from autorecovery.bootstrap import require_urls

    database_url, _ = require_urls(_settings())
    applied = migrate(database_url)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete (or with --dry-run, count) history past its retention."""
    from autorecovery.adapters.store import Database
    from autorecovery.bootstrap import require_urls, retention_policy
    from autorecovery.services import utcnow
    from autorecovery.services.retention import RetentionService

    settings = _settings()
    database_url, _ = require_urls(settings)
    db = Database(database_url, max_size=1)
    db.open()
    try:
        summary = RetentionService(db, utcnow, retention_policy(settings)).prune(
            dry_run=args.dry_run, actor="cli"
        )
    finally:
        db.close()
    if args.json:
        print(json.dumps(summary))
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    for kind, n in summary["rows"].items():
        print(f"{kind:<15} {verb} {n:>8} row(s) older than {summary['cutoffs'][kind]}")
    return EXIT_OK


def cmd_tick(args: argparse.Namespace) -> int:
    """Run one monitoring tick with its batches in this process (activations go to the broker).

    It is a tick like beat's: one sent within the same interval as another is a duplicate and
    says so instead of running.
    """
    import workers
    from autorecovery.bootstrap import build

    container = build(workers.settings, workers.enqueue_activation, workers.enqueue_storage_activation)
    try:
        result = container.monitoring.tick()
    finally:
        container.close()
    print(json.dumps(result.as_dict(), indent=None if args.json else 2))
    return EXIT_OK


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API."""
    from api.server import serve

    serve(_settings())
    return EXIT_OK


def cmd_check_flower_auth(args: argparse.Namespace) -> int:
    """Refuse (exit 2) an empty, malformed or weak FLOWER_BASIC_AUTH; run before Flower."""
    from autorecovery.flower_auth import FLOWER_VAR, check_flower_auth

    users = check_flower_auth(os.environ.get(FLOWER_VAR, ""))
    print(f"{FLOWER_VAR}: {len(users)} user(s) ({', '.join(users)}), every password strong enough")
    return EXIT_OK


def cmd_agent(args: argparse.Namespace) -> int:
    """Run the host agent (agent protocol v2 on libvirt) on this hypervisor."""
    try:
        from hostagent.config import load_config
        from hostagent.daemon import check, run
        from hostagent.libvirt_hypervisor import LibvirtHypervisor  # noqa: F401 - fail early, with advice
    except ImportError as exc:  # libvirt-python is an extra: say how to get it
        print(f"autorecovery: the agent needs {exc.name}: pip install 'autorecovery[agent]'", file=sys.stderr)
        return EXIT_ERROR
    config = load_config(args.config)
    if args.check:
        return check(config)
    logging.getLogger().setLevel(logging.INFO)
    run(config, bind=args.bind, port=args.port)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every command."""
    parser = argparse.ArgumentParser(prog="autorecovery", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)
    prune = sub.add_parser("prune", help="delete history past its retention (AUTORECOVERY_RETENTION_*)")
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    prune.add_argument("--json", action="store_true", help="one line of JSON")
    prune.set_defaults(handler=cmd_prune)
    tick = sub.add_parser("tick", help="run one monitoring tick now, in this process")
    tick.add_argument("--json", action="store_true", help="one line of JSON")
    tick.set_defaults(handler=cmd_tick)
    sub.add_parser("api", help="serve the HTTP API").set_defaults(handler=cmd_api)
    sub.add_parser(
        "check-flower-auth", help="refuse a missing, malformed or weak FLOWER_BASIC_AUTH (before Flower)"
    ).set_defaults(handler=cmd_check_flower_auth)
    add_tool_commands(sub)

    agent = sub.add_parser("agent", help="run the host agent on this KVM host (needs the agent extra)")
    agent.add_argument(
        "--config", type=Path, default=Path("/etc/autorecovery/agent.toml"), help="its TOML file"
    )
    agent.add_argument("--bind", default=None, help="address to listen on (default: the config's)")
    agent.add_argument("--port", type=int, default=None, help="port (default: the config's; 0: a free one)")
    agent.add_argument(
        "--check", action="store_true", help="check the setup, print a fresh report, exit (changes nothing)"
    )
    agent.set_defaults(handler=cmd_agent)

    try:
        from cli.ops import add_operator_commands
    except ImportError:  # pragma: no cover - operator commands ship with the API client
        pass
    else:
        add_operator_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except InvalidInput as exc:
        print(f"autorecovery: {exc.field}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except AutorecoveryError as exc:
        print(f"autorecovery: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
