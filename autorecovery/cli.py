"""The ``autorecovery`` command: run everything embedded, migrate, tick, the simulator, the API.

Operator commands (hosts, plan, audit, pause, resume, safety, storage-domains, placement,
vm-runs) talk to the HTTP API; see ``autorecovery.cli_ops`` and docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import AutorecoveryError, InvalidInput

if TYPE_CHECKING:
    from autorecovery.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

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


def cmd_tick(args: argparse.Namespace) -> int:
    """Run one monitoring tick in this process (activations go to the broker)."""
    import workers

    result = workers.container().monitoring.tick()
    print(json.dumps(result.as_dict(), indent=None if args.json else 2))
    return EXIT_OK


def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve a simulated fleet on agent protocol v1."""
    from harness.sim import Fleet, serve

    fleet = Fleet.generate(
        hosts=args.hosts, clusters=args.clusters, shared_storage_domain=args.shared_storage_domain
    )
    print(
        f"fleet simulator: {args.hosts} hosts in {args.clusters} cluster(s) on "
        f"http://{args.host}:{args.port}",
        flush=True,
    )
    serve(fleet, host=args.host, port=args.port)
    return EXIT_OK


def cmd_sim_register(args: argparse.Namespace) -> int:
    """Register a running simulator's fleet in the database."""
    import workers
    from autorecovery.services import utcnow
    from autorecovery.services.fleet import FleetService
    from harness.sim import SimulatorClient
    from harness.sim.register import register_fleet

    deps = workers.container()
    service = FleetService(
        deps.db, workers.enqueue_activation, report_max_age_s=deps.settings.report_max_age_s, clock=utcnow
    )
    with SimulatorClient(args.url) as client:
        added = register_fleet(service, client.fleet(), actor=args.actor)
    print(f"registered {added} host(s) from {args.url}")
    return EXIT_OK


def cmd_sim_fault(args: argparse.Namespace) -> int:
    """Inject or clear a fault in a running simulator."""
    from harness.sim import SimulatorClient

    with SimulatorClient(args.url) as client:
        if args.action == "clear":
            answer = client.clear(
                hosts=args.hosts,
                cluster=args.cluster,
                storage_domain=args.storage_domain,
                fault=args.fault,
                target=args.target,
            )
        else:
            if not args.fault:
                raise InvalidInput("--fault", "is required to inject")
            answer = client.inject(
                args.fault,
                hosts=args.hosts,
                cluster=args.cluster,
                storage_domain=args.storage_domain,
                all_hosts=args.all,
                target=args.target,
                reason=args.reason,
                seconds=args.seconds,
            )
    print(json.dumps(answer))
    return EXIT_OK


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API."""
    from api.app import serve

    serve(_settings())
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


def cmd_up(args: argparse.Namespace) -> int:
    """Run everything: embedded servers when no URL is set, simulator, worker, beat, API."""
    from harness.up import UpOptions, run_up

    return run_up(
        UpOptions(
            hosts=args.hosts,
            clusters=args.clusters,
            chaos=args.chaos,
            duration_s=args.duration,
            data_dir=args.data_dir,
            concurrency=args.concurrency,
            sim_port=args.sim_port,
            api_port=args.api_port,
            seed=args.seed,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every command."""
    parser = argparse.ArgumentParser(prog="autorecovery", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run everything (embedded PostgreSQL and Redis by default)")
    up.add_argument("--hosts", type=int, default=12, help="simulated hosts (default 12)")
    up.add_argument("--clusters", type=int, default=2, help="simulated clusters (default 2)")
    up.add_argument("--chaos", action="store_true", help="inject and clear random faults")
    up.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long and print a summary (default: until Ctrl-C)",
    )
    up.add_argument("--data-dir", type=Path, default=None, help="embedded servers' data")
    up.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    up.add_argument("--sim-port", type=int, default=0, help="simulator port (default: free)")
    up.add_argument("--api-port", type=int, default=None, help="API port (default 8800)")
    up.add_argument("--seed", type=int, default=None, help="seed of the chaos (repeatable runs)")
    up.set_defaults(handler=cmd_up)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)
    tick = sub.add_parser("tick", help="run one monitoring tick now, in this process")
    tick.add_argument("--json", action="store_true", help="one line of JSON")
    tick.set_defaults(handler=cmd_tick)
    sub.add_parser("api", help="serve the HTTP API").set_defaults(handler=cmd_api)

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

    sim = sub.add_parser("sim", help="the fleet simulator")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    serve = sim_sub.add_parser("serve", help="serve a simulated fleet")
    serve.add_argument("--hosts", type=int, default=12)
    serve.add_argument("--clusters", type=int, default=2)
    serve.add_argument(
        "--shared-storage-domain", action="store_true", help="attach one storage domain to every cluster"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8900)
    serve.set_defaults(handler=cmd_sim_serve)
    register = sim_sub.add_parser("register", help="register a simulator's fleet in the database")
    register.add_argument("--url", default="http://127.0.0.1:8900", help="the simulator's URL")
    register.add_argument("--actor", default="cli", help="actor recorded in the audit log")
    register.set_defaults(handler=cmd_sim_register)
    for action in ("inject", "clear"):
        fault = sim_sub.add_parser(action, help=f"{action} a fault in a running simulator")
        fault.add_argument("--url", default="http://127.0.0.1:8900")
        fault.add_argument(
            "--fault",
            help="sd_down, nic_down, kvm_down, silent, init_fail, init_delay, report_delay, version",
        )
        fault.add_argument("--hosts", nargs="+", default=None)
        fault.add_argument("--cluster")
        fault.add_argument("--storage-domain")
        fault.add_argument("--all", action="store_true", help="every host")
        fault.add_argument("--target", help="the storage domain or network concerned")
        fault.add_argument("--reason", help="init_fail's reason")
        fault.add_argument("--seconds", type=float, help="init_delay/report_delay seconds")
        fault.set_defaults(handler=cmd_sim_fault, action=action)

    try:
        from autorecovery.cli_ops import add_operator_commands
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
