"""The operator commands' argparse wiring, and the wrapper that turns failures into exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from cli.enroll import add_enroll_command
from cli.ops.audit import cmd_audit
from cli.ops.client import ApiClient, ApiFailure, resolve
from cli.ops.hosts import (
    ANY_HOLD,
    HOLDS,
    cmd_hosts_activate,
    cmd_hosts_autorecovery,
    cmd_hosts_clear_agent_hold,
    cmd_hosts_holds,
    cmd_hosts_list,
    cmd_hosts_maintenance,
    cmd_hosts_show,
)
from cli.ops.live import DEFAULT_EVERY_S
from cli.ops.onboarding_args import add_onboarding_commands
from cli.ops.placement import attempt_spec, cmd_placement, cmd_vm_runs_report
from cli.ops.render import Output
from cli.ops.safety import DurationAction, cmd_pause, cmd_plan, cmd_resume, cmd_safety
from cli.ops.storage import (
    cmd_domains_activate,
    cmd_domains_autorecovery,
    cmd_domains_list,
    cmd_domains_maintenance,
    cmd_domains_show,
)
from cli.ops.wait import DEFAULT_WAIT_S
from models.audit_events import AUDIT_EVENTS
from models.domain import HostStatus
from models.policy import ACTIVATE, Skip

CODES = (
    "exit codes: 0 ok, 1 failed, 2 bad input, 3 timeout, 4 not found, 5 conflict, 6 auth, 7 API unreachable"
)

Command = Callable[[ApiClient, argparse.Namespace, Output], int]


def run_command(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: resolve URL and token, call it, turn a failure into its exit code."""

    def handle(args: argparse.Namespace) -> int:
        out = Output(json_mode=args.json or getattr(args, "output", None) == "json")
        try:
            url, token = resolve(args)
            with ApiClient(url, token, transport=args.transport) as api:
                return int(command(api, args, out))
        except ApiFailure as exc:
            out.failure(exc)
            return int(exc.exit_code)

    return handle


def _positive(kind: Callable[[str], float | int]) -> Callable[[str], Any]:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
        return value

    return parse


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    api = common.add_argument_group("API")
    api.add_argument(
        "--api-url", metavar="URL", help="the API (default: AUTORECOVERY_API_URL, else http://127.0.0.1:8800)"
    )
    api.add_argument(
        "--token",
        help="bearer token (default: AUTORECOVERY_TOKEN; prefer the variable, arguments show in `ps`)",
    )
    api.add_argument("--json", action="store_true", help="print the API's JSON for scripts")
    api.add_argument(
        "--insecure",
        action="store_true",
        help="allow sending the token over plain http to a host other than loopback "
        "(default: refused; also AUTORECOVERY_CLI_INSECURE=1)",
    )
    common.set_defaults(transport=None)
    return common


def _add_watch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-w",
        "--watch",
        nargs="?",
        const=DEFAULT_EVERY_S,
        type=_positive(float),
        metavar="SECONDS",
        help=f"draw it again every SECONDS (default {DEFAULT_EVERY_S:g}) until Ctrl-C, which exits 0",
    )
    # For tests and scripts: stop after this many rounds.
    parser.add_argument("--watch-count", type=_positive(int), help=argparse.SUPPRESS)


def add_operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operator commands to ``autorecovery``.

    ``hosts``, ``storage-domains``, ``placement``, ``vm-runs``, ``plan``, ``audit``, ``pause``,
    ``resume`` and ``safety``.
    """
    common = [_common()]
    codes = CODES
    hosts = sub.add_parser("hosts", help="list, show and operate hosts through the API", epilog=codes)
    hsub = hosts.add_subparsers(dest="hosts_command", required=True, metavar="HOSTS_COMMAND")

    ls = hsub.add_parser("list", parents=common, help="list hosts", epilog=codes)
    ls.add_argument("--status", choices=[s.value for s in HostStatus])
    ls.add_argument("--cluster", metavar="ID")
    ls.add_argument("--autorecovery", choices=("on", "off"))
    ls.add_argument(
        "--decision",
        choices=[ACTIVATE, *(s.value for s in Skip)],
        metavar="CODE",
        help="only hosts whose last decision is CODE: activate, healthy, backoff, has_problems, ...",
    )
    ls.add_argument(
        "--held",
        nargs="?",
        const=ANY_HOLD,
        choices=[ANY_HOLD, *HOLDS],
        metavar="HOLD",
        help=f"only hosts that carry a hold: {', '.join(HOLDS)}; without HOLD: any",
    )
    ls.add_argument("--limit", type=_positive(int), help="at most this many (default: all)")
    ls.add_argument("--after", metavar="ID", help="start after this host id")
    ls.add_argument(
        "-o",
        "--output",
        choices=("table", "wide", "json"),
        default="table",
        help="wide: also status since, detail and agent URL; json: as --json",
    )
    _add_watch(ls)
    ls.set_defaults(handler=run_command(cmd_hosts_list))

    show = hsub.add_parser("show", parents=common, help="a host, and why it is not up", epilog=codes)
    show.add_argument("host_id", metavar="ID")
    show.set_defaults(handler=run_command(cmd_hosts_show))

    act = hsub.add_parser(
        "activate",
        parents=common,
        epilog=codes,
        help="activate a host now, whatever its autorecovery flag says",
    )
    act.add_argument("host_id", metavar="ID")
    act.add_argument(
        "--wait", action="store_true", help="follow the activation; exit 0 when the host is up, 1 when not"
    )
    act.add_argument(
        "--timeout",
        type=_positive(float),
        metavar="SECONDS",
        help=f"with --wait: give up waiting after this long, exit 3 (default {DEFAULT_WAIT_S:g})",
    )
    act.add_argument(
        "--force",
        action="store_true",
        help="init the host even though its fresh report shows a problem (audited as forced)",
    )
    act.set_defaults(handler=run_command(cmd_hosts_activate))

    flag = hsub.add_parser(
        "autorecovery", parents=common, epilog=codes, help="turn a host's autorecovery on or off"
    )
    flag.add_argument("host_id", metavar="ID")
    flag.add_argument("state", choices=("on", "off"))
    flag.set_defaults(handler=run_command(cmd_hosts_autorecovery))

    maint = hsub.add_parser(
        "maintenance",
        parents=common,
        epilog=codes,
        help="take a host out of service until an admin activates it",
    )
    maint.add_argument("host_id", metavar="ID")
    maint.add_argument("--reason", help="why, for the audit log")
    maint.set_defaults(handler=run_command(cmd_hosts_maintenance))

    for name, text in (
        ("quarantine-clear", "take a host out of flap quarantine and reset its backoff"),
        ("backoff-reset", "forget a host's failed automatic activations (a quarantine stays)"),
    ):
        holds = hsub.add_parser(name, parents=common, epilog=codes, help=text)
        holds.add_argument("host_id", metavar="ID")
        holds.set_defaults(handler=run_command(cmd_hosts_holds))

    clear = hsub.add_parser(
        "clear-agent-hold",
        parents=common,
        epilog=codes,
        help="after an agent_fence_ahead event and the agent's state restored: tell the agent the "
        "product's fence and clear the hold (refused while the agent still claims more)",
    )
    clear.add_argument("host_id", metavar="ID")
    clear.set_defaults(handler=run_command(cmd_hosts_clear_agent_hold))

    add_enroll_command(hsub)
    add_onboarding_commands(sub, hsub, common, run_command, CODES)
    _add_storage_commands(sub, common)
    _add_placement_commands(sub, common)

    plan = sub.add_parser(
        "plan", parents=common, epilog=codes, help="what the next tick would do for each host, and why"
    )
    plan.add_argument("--cluster", metavar="ID")
    plan.set_defaults(handler=run_command(cmd_plan))

    audit = sub.add_parser("audit", parents=common, help="the audit log, newest first", epilog=codes)
    about = audit.add_mutually_exclusive_group()
    about.add_argument("--host", metavar="ID", help="entries about this host")
    about.add_argument("--storage-domain", metavar="ID", help="entries about this storage domain")
    audit.add_argument("--actor", help="token name, or auto")
    audit.add_argument(
        "--event",
        choices=list(AUDIT_EVENTS),
        metavar="EVENT",
        help="e.g. activation_succeeded, autorecovery_disabled (--events lists them all)",
    )
    audit.add_argument("--since", help="RFC 3339 time with a zone, or 30m, 2h, 1d ago")
    audit.add_argument("--limit", type=_positive(int), default=50, help="default 50")
    audit.add_argument(
        "--before",
        type=_positive(int),
        metavar="ENTRY_ID",
        help="entries older than this one (the next page)",
    )
    audit.add_argument("--events", action="store_true", help="list every audit event name, one line each")
    audit.add_argument(
        "-f",
        "--follow",
        nargs="?",
        const=DEFAULT_EVERY_S,
        type=_positive(float),
        metavar="SECONDS",
        help="print the last --limit entries, then each new one as it is written (looking every "
        f"SECONDS, default {DEFAULT_EVERY_S:g}) until Ctrl-C, which exits 0; --json: one line per entry",
    )
    audit.add_argument("--follow-count", type=_positive(int), help=argparse.SUPPRESS)
    audit.set_defaults(handler=run_command(cmd_audit))

    pause = sub.add_parser(
        "pause", parents=common, epilog=codes, help="stop automatic activation, fleet-wide or for one cluster"
    )
    pause.add_argument("--cluster", metavar="ID", help="only this cluster (default: the fleet)")
    pause.add_argument("--reason", required=True, help="why, for the audit log and the plan")
    pause.add_argument(
        "--for",
        dest="duration",
        nargs="+",
        action=DurationAction,
        metavar="DURATION",
        help="end by itself after 30m, 2h, 90s, 1h30m, 5 minutes, ... (default: until `autorecovery resume`)",
    )
    pause.set_defaults(handler=run_command(cmd_pause))

    resume = sub.add_parser(
        "resume", parents=common, epilog=codes, help="lift a pause, fleet-wide or of one cluster"
    )
    resume.add_argument("--cluster", metavar="ID", help="only this cluster (default: the fleet)")
    resume.set_defaults(handler=run_command(cmd_resume))

    safety = sub.add_parser(
        "safety",
        parents=common,
        epilog=codes,
        help="what holds automatic activation: observer, pauses, incidents",
    )
    _add_watch(safety)
    safety.set_defaults(handler=run_command(cmd_safety))


def _add_storage_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: list[argparse.ArgumentParser]
) -> None:
    domains = sub.add_parser(
        "storage-domains", help="list, show and operate storage domains through the API", epilog=CODES
    )
    dsub = domains.add_subparsers(dest="domains_command", required=True, metavar="STORAGE_DOMAINS_COMMAND")

    ls = dsub.add_parser("list", parents=common, help="list storage domains", epilog=CODES)
    ls.set_defaults(handler=run_command(cmd_domains_list))

    show = dsub.add_parser(
        "show", parents=common, help="a storage domain, its clusters and its activation", epilog=CODES
    )
    show.add_argument("sd_id", metavar="ID")
    show.set_defaults(handler=run_command(cmd_domains_show))

    act = dsub.add_parser(
        "activate",
        parents=common,
        epilog=CODES,
        help="activate a storage domain now (also out of maintenance), whatever its autorecovery flag",
    )
    act.add_argument("sd_id", metavar="ID")
    act.add_argument(
        "--wait",
        action="store_true",
        help="follow the activation; exit 0 when the domain is active, 1 when not",
    )
    act.add_argument(
        "--timeout",
        type=_positive(float),
        metavar="SECONDS",
        help=f"with --wait: give up waiting after this long, exit 3 (default {DEFAULT_WAIT_S:g})",
    )
    act.set_defaults(handler=run_command(cmd_domains_activate))

    flag = dsub.add_parser(
        "autorecovery",
        parents=common,
        epilog=CODES,
        help="turn a storage domain's automatic reactivation on or off",
    )
    flag.add_argument("sd_id", metavar="ID")
    flag.add_argument("state", choices=("on", "off"))
    flag.set_defaults(handler=run_command(cmd_domains_autorecovery))

    maint = dsub.add_parser(
        "maintenance",
        parents=common,
        epilog=CODES,
        help="put a storage domain in maintenance: monitoring leaves it alone until an admin activates it",
    )
    maint.add_argument("sd_id", metavar="ID")
    maint.add_argument("--reason", help="why, for the audit log")
    maint.set_defaults(handler=run_command(cmd_domains_maintenance))


def _add_placement_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: list[argparse.ArgumentParser]
) -> None:
    placement = sub.add_parser(
        "placement",
        parents=common,
        epilog=CODES,
        help="a cluster's up hosts, best first for the next VM, each score explained",
    )
    placement.add_argument("cluster", metavar="CLUSTER")
    placement.set_defaults(handler=run_command(cmd_placement))

    runs = sub.add_parser(
        "vm-runs", help="report VM placement attempts (for schedulers and scripts)", epilog=CODES
    )
    rsub = runs.add_subparsers(dest="vm_runs_command", required=True, metavar="VM_RUNS_COMMAND")
    report = rsub.add_parser(
        "report",
        parents=common,
        epilog=CODES,
        help="report where a VM was tried, in order; a host that failed it before it started elsewhere "
        "is charged",
    )
    report.add_argument("--vm", required=True, metavar="VM", help="the VM's id")
    report.add_argument(
        "--attempt",
        dest="attempts",
        required=True,
        action="extend",
        nargs="+",
        type=attempt_spec,
        metavar="ATTEMPT",
        help="HOST:ok, HOST:failed or HOST:failed:ERROR, in the order the attempts were made; "
        "repeat the option or list several",
    )
    report.set_defaults(handler=run_command(cmd_vm_runs_report))
