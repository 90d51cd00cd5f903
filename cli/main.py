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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.tools import EXIT_ERROR, EXIT_OK, EXIT_USAGE, add_tool_commands
from models.errors import AutorecoveryError, InvalidInput

if TYPE_CHECKING:
    from autorecovery.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


def _settings() -> Settings:
    from autorecovery.settings import load_settings

    return load_settings()


@contextmanager
def _database(args: argparse.Namespace, settings: Settings) -> Iterator[str]:
    """Yield AUTORECOVERY_DATABASE_URL, or else the embedded PostgreSQL's URL in the data directory.

    The embedded one is ``autorecovery up``'s: reused while ``up`` runs (its handle is released
    afterwards, which stops nothing ``up`` still uses), started when it does not. Redis is not
    needed for the database's own work.
    """
    if settings.database_url:
        yield settings.database_url
        return
    from harness.embedded import start_embedded

    data_dir = (args.data_dir or settings.data_dir).resolve()
    print(
        f"AUTORECOVERY_DATABASE_URL is not set: using the embedded PostgreSQL in {data_dir}", file=sys.stderr
    )
    embedded = start_embedded(data_dir)
    try:
        yield embedded.database_url
    finally:
        embedded.stop()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations to AUTORECOVERY_DATABASE_URL (or the embedded database)."""
    from autorecovery.adapters.store import migrate

    with _database(args, _settings()) as database_url:
        applied = migrate(database_url)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete (or with --dry-run, count) history past its retention."""
    from autorecovery.bootstrap import retention

    settings = _settings()
    with _database(args, settings) as database_url, retention(settings, database_url) as service:
        summary = service.prune(dry_run=args.dry_run, actor="cli")
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


def cmd_beat_alive(args: argparse.Namespace) -> int:
    """Exit 0 while this container's beat is alive (the liveness probe), 1 with the reason if not."""
    import time

    import redis

    from autorecovery.adapters import keys
    from autorecovery.beat_liveness import liveness, read_heartbeat

    settings = _settings()
    local_at = read_heartbeat(args.heartbeat_file or settings.beat_heartbeat_path())
    shared_at = None
    if settings.redis_url:
        try:
            with redis.Redis.from_url(settings.redis_url, socket_timeout=5) as client:
                raw = client.get(keys.beat_heartbeat())
            shared_at = float(raw) if raw is not None else None
        except (redis.RedisError, ValueError) as exc:
            print(f"beat-alive: cannot read the shared heartbeat: {exc}", file=sys.stderr)
    loop_s = max(1.0, min(settings.tick_interval_s, settings.beat_lock_timeout_s / 3))
    why = liveness(
        local_at,
        shared_at,
        time.time(),
        max_age_s=max(60.0, 6 * loop_s),
        takeover_s=3 * settings.beat_lock_timeout_s,
    )
    if why is not None:
        print(f"beat is not alive: {why}", file=sys.stderr)
        return EXIT_ERROR
    print("beat is alive" + (" (leading)" if local_at is not None else " (standing by)"))
    return EXIT_OK


def cmd_check_flower_auth(args: argparse.Namespace) -> int:
    """Refuse (exit 2) an empty, malformed or weak FLOWER_BASIC_AUTH; run before Flower."""
    from autorecovery.flower_auth import FLOWER_VAR, check_flower_auth

    users = check_flower_auth(os.environ.get(FLOWER_VAR, ""))
    print(f"{FLOWER_VAR}: {len(users)} user(s) ({', '.join(users)}), every password strong enough")
    return EXIT_OK


def cmd_agent(args: argparse.Namespace) -> int:
    """Run the host agent (agent protocol v2 on libvirt) on this hypervisor."""
    from hostagent.cli import run_agent

    return run_agent(args)


def cmd_no_agent(args: argparse.Namespace) -> int:
    """Say that this installation has no host agent, and where it comes from."""
    print(
        "autorecovery: the host agent is not installed here (the control plane's image carries "
        "none); on a hypervisor install the autorecovery-agent package (docs/agent.md)",
        file=sys.stderr,
    )
    return EXIT_USAGE


def add_agent_command(sub: Any) -> None:
    """Add ``agent``: the host agent's own options where it is installed, else a pointer to it."""
    agent = sub.add_parser(
        "agent", help="run the host agent on this KVM host (or install autorecovery-agent alone)"
    )
    try:
        from hostagent.cli import add_arguments
    except ImportError:  # a control-plane install (the image): the agent ships on its own
        agent.set_defaults(handler=cmd_no_agent)
        return
    add_arguments(agent)
    agent.set_defaults(handler=cmd_agent)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every command."""
    parser = argparse.ArgumentParser(prog="autorecovery", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_dir_help = "the embedded database's data directory, used when AUTORECOVERY_DATABASE_URL is unset"
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    migrate.set_defaults(handler=cmd_migrate)
    prune = sub.add_parser("prune", help="delete history past its retention (AUTORECOVERY_RETENTION_*)")
    prune.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
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
    alive = sub.add_parser(
        "beat-alive", help="exit 0 while this container's beat is alive (Kubernetes liveness probe)"
    )
    alive.add_argument(
        "--heartbeat-file",
        type=Path,
        default=None,
        help="the beat's heartbeat file (default: AUTORECOVERY_BEAT_HEARTBEAT_FILE, as the beat uses)",
    )
    alive.set_defaults(handler=cmd_beat_alive)
    add_tool_commands(sub)

    add_agent_command(sub)

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
