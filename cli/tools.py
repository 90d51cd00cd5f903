"""The ``autorecovery`` commands that run the tools around the product: ``up``, ``sim``, ``agent-check``.

They reach ``harness`` (the simulator, the embedded servers, the conformance test), which the
application itself never imports; ``cli.main`` adds them to its parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.errors import InvalidInput

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

SubParsers = argparse._SubParsersAction  # argparse's own type for add_subparsers()


def add_tool_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``up``, ``sim`` and ``agent-check`` to the command's subparsers."""
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
    up.add_argument(
        "--clear-quarantine-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --chaos, the demo's admin clears a flapping host's quarantine after this long "
        "(default 30; 0: never)",
    )
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
            help="sd_down, nic_down, kvm_down, silent, init_fail, init_delay, init_hang, report_delay, "
            "version, vm_fail, pool_stopped, net_stopped (the last two: what init repairs)",
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
    _add_agent_check(sub)


def _add_agent_check(sub: SubParsers[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "agent-check",
        help="conformance test of a host agent (protocol v2 or v1); see docs/agent.md",
        description="Check an agent's report and authentication, changing nothing on it. With "
        "--fence-checks (before the host is registered) also its init, busy refusal, idempotence, "
        "status route and /fence: it runs a few inits on the host (unless --no-init) and leaves the "
        "agent's highest fence two above where it was. Exits 1 when any check fails.",
    )
    check.add_argument("url", help="the agent's base URL, as registered (agent_url)")
    check.add_argument("--token-file", type=Path, help="file holding the agent's bearer token")
    check.add_argument("--host-id", help="the id the host is registered with (checks the report's host_id)")
    check.add_argument(
        "--fence-checks",
        action="store_true",
        help="also run the init and fence checks; they change the agent's state: only before the "
        "host is registered (a registered host's next activation would be held agent_fence_ahead)",
    )
    check.add_argument("--no-init", action="store_true", help="with --fence-checks: send no init")
    check.add_argument("--fence-base", type=int, default=None,
                       help="lowest fence to use (default: one above the agent's highest)")
    check.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    check.add_argument("--init-wait", type=float, default=120.0, help="longest wait for a test init")
    check.add_argument("--ca-file", type=Path, help="CA bundle for an https:// agent")
    check.set_defaults(handler=cmd_agent_check)


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
        fence_checks=args.fence_checks,
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
            clear_quarantine_after_s=args.clear_quarantine_after,
        )
    )
