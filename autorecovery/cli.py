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
    """Run one monitoring tick in this process (activations go to the broker)."""
    import workers

    result = workers.container().monitoring.tick()
    print(json.dumps(result.as_dict(), indent=None if args.json else 2))
    return EXIT_OK


def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve a simulated fleet on agent protocol v2 (or v1 with ``--protocol 1``)."""
    from harness.sim import Fleet, serve
    from harness.tokenfile import read_token_file

    token = read_token_file(args.token_file) if args.token_file else None
    fleet = Fleet.generate(
        hosts=args.hosts,
        clusters=args.clusters,
        shared_storage_domain=args.shared_storage_domain,
        protocol=args.protocol,
    )
    print(
        f"fleet simulator: {args.hosts} hosts in {args.clusters} cluster(s) on "
        f"http://{args.host}:{args.port}, agent protocol v{args.protocol}, "
        f"{'bearer token required' if token else 'no token'}",
        flush=True,
    )
    serve(fleet, host=args.host, port=args.port, token=token)
    return EXIT_OK


def cmd_sim_register(args: argparse.Namespace) -> int:
    """Register a running simulator's fleet in the database."""
    import workers
    from harness.sim import SimulatorClient
    from harness.sim.register import register_fleet

    with SimulatorClient(args.url) as client:
        added = register_fleet(workers.container().fleet, client.fleet(), actor=args.actor)
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


def cmd_sim_protocol(args: argparse.Namespace) -> int:
    """Switch hosts of a running simulator to agent protocol v1 or v2."""
    from harness.sim import SimulatorClient

    with SimulatorClient(args.url) as client:
        answer = client.set_protocol(
            args.protocol, hosts=args.hosts, cluster=args.cluster, storage_domain=args.storage_domain
        )
    print(json.dumps(answer))
    return EXIT_OK


def cmd_agent_check(args: argparse.Namespace) -> int:
    """Check that an agent speaks protocol v2 (or v1) as the product expects."""
    from harness.agentcheck import CheckConfig, run_checks
    from harness.tokenfile import read_token_file

    if args.fence_base is not None and args.fence_base < 1:
        raise InvalidInput("--fence-base", "must be at least 1")
    cfg = CheckConfig(
        url=args.url,
        token=read_token_file(args.token_file) if args.token_file else None,
        host_id=args.host_id,
        run_inits=not args.no_init,
        fence_base=args.fence_base,
        timeout_s=args.timeout,
        init_wait_s=args.init_wait,
        ca_file=str(args.ca_file) if args.ca_file else None,
    )
    results, notes = run_checks(cfg)
    for result in results.items:
        print(result.line())
    counts = {v: sum(1 for r in results.items if r.verdict == v) for v in ("PASS", "FAIL", "SKIP")}
    print(f"agent-check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    for note in notes:
        print(f"agent-check changed the agent: {note}")
    return EXIT_ERROR if results.has_failure else EXIT_OK


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API."""
    from api.server import serve

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
            fresh=args.fresh,
            flower=args.flower,
            flower_port=args.flower_port,
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
    up.add_argument(
        "--api-port", type=int, default=None, help="API port, which must be free (AUTORECOVERY_API_PORT)"
    )
    up.add_argument("--seed", type=int, default=None, help="seed of the chaos (repeatable runs)")
    kept = up.add_mutually_exclusive_group()
    kept.add_argument(
        "--fresh",
        dest="fresh",
        action="store_const",
        const=True,
        default=None,
        help="reset the demo database first (the default for the embedded one)",
    )
    kept.add_argument(
        "--keep",
        dest="fresh",
        action="store_const",
        const=False,
        help="keep the last run's hosts, holds and audit (the default for AUTORECOVERY_DATABASE_URL)",
    )
    up.add_argument("--flower", action="store_true", help="also start Flower, with basic auth")
    up.add_argument("--flower-port", type=int, default=5555, help="Flower's port (default 5555)")
    up.set_defaults(handler=cmd_up)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)
    prune = sub.add_parser("prune", help="delete history past its retention (AUTORECOVERY_RETENTION_*)")
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    prune.add_argument("--json", action="store_true", help="one line of JSON")
    prune.set_defaults(handler=cmd_prune)
    tick = sub.add_parser("tick", help="run one monitoring tick now, in this process")
    tick.add_argument("--json", action="store_true", help="one line of JSON")
    tick.set_defaults(handler=cmd_tick)
    sub.add_parser("api", help="serve the HTTP API").set_defaults(handler=cmd_api)
    _add_agent_check(sub)

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
    serve.add_argument(
        "--protocol", type=int, choices=(1, 2), default=2, help="agent protocol the hosts speak (default 2)"
    )
    serve.add_argument(
        "--token-file", type=Path, default=None, help="file holding the agents' bearer token (default: none)"
    )
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
    proto = sim_sub.add_parser("protocol", help="switch a running simulator's hosts to protocol v1 or v2")
    proto.add_argument("protocol", type=int, choices=(1, 2))
    proto.add_argument("--url", default="http://127.0.0.1:8900")
    proto.add_argument("--hosts", nargs="+", default=None, help="default: every host")
    proto.add_argument("--cluster")
    proto.add_argument("--storage-domain")
    proto.set_defaults(handler=cmd_sim_protocol)

    try:
        from autorecovery.cli_ops import add_operator_commands
    except ImportError:  # pragma: no cover - operator commands ship with the API client
        pass
    else:
        add_operator_commands(sub)
    return parser


def _add_agent_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "agent-check",
        help="conformance test of a host agent (protocol v2 or v1); see docs/agent.md",
        description="Check an agent's report, authentication, init, busy refusal, idempotence, status "
        "route and /fence. It runs a few inits on the host (unless --no-init) and leaves the agent's "
        "highest fence two above where it was. Exits 1 when any check fails.",
    )
    check.add_argument("url", help="the agent's base URL, as registered (agent_url)")
    check.add_argument("--token-file", type=Path, help="file holding the agent's bearer token")
    check.add_argument("--host-id", help="the id the host is registered with (checks the report's host_id)")
    check.add_argument("--no-init", action="store_true", help="send no init (skips the init checks)")
    check.add_argument("--fence-base", type=int, default=None,
                       help="lowest fence to use (default: one above the agent's highest)")
    check.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    check.add_argument("--init-wait", type=float, default=120.0, help="longest wait for a test init")
    check.add_argument("--ca-file", type=Path, help="CA bundle for an https:// agent")
    check.set_defaults(handler=cmd_agent_check)


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
