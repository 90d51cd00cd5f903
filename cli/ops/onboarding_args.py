"""The argparse wiring of the onboarding commands (``cli.ops.onboarding``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cli.ops.onboarding import (
    cmd_clusters_add,
    cmd_clusters_delete,
    cmd_clusters_list,
    cmd_hosts_add,
    cmd_hosts_delete,
    cmd_hosts_import,
)

#: ``parser.run_command``: wraps a command into an argparse handler.
Wrap = Callable[[Callable[..., int]], Callable[[argparse.Namespace], int]]


def add_onboarding_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    hsub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
    run_command: Wrap,
    codes: str,
) -> None:
    """Add ``hosts add|import|delete`` and ``clusters add|list|delete``."""
    adopt_help = "bring an existing, healthy host in: its first clean report marks it up without an init"
    add = hsub.add_parser("add", parents=common, epilog=codes, help="register a host")
    add.add_argument("host_id", metavar="ID")
    add.add_argument("--cluster", required=True, metavar="CLUSTER")
    add.add_argument("--agent-url", required=True, metavar="URL", help="where the host's agent answers")
    add.add_argument("--adopt", action="store_true", help=adopt_help)
    add.set_defaults(handler=run_command(cmd_hosts_add))

    imp = hsub.add_parser(
        "import",
        parents=common,
        epilog=codes,
        help="register every host of a CSV, JSON or JSON Lines file, or none when a line is bad",
    )
    imp.add_argument(
        "file", metavar="FILE", help="CSV with header id,cluster,agent_url[,adopt]; .json; .jsonl"
    )
    imp.add_argument("--adopt", action="store_true", help=adopt_help + " (a line's adopt column wins)")
    imp.add_argument(
        "--dry-run", action="store_true", help="check every line here and with the API; register nothing"
    )
    imp.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave out hosts registered already (to finish an import that stopped half way)",
    )
    imp.set_defaults(handler=run_command(cmd_hosts_import))

    delete = hsub.add_parser("delete", parents=common, epilog=codes, help="forget a host (its audit stays)")
    delete.add_argument("host_id", metavar="ID")
    delete.set_defaults(handler=run_command(cmd_hosts_delete))

    clusters = sub.add_parser("clusters", help="add, list and delete clusters through the API", epilog=codes)
    csub = clusters.add_subparsers(dest="clusters_command", required=True, metavar="CLUSTERS_COMMAND")
    cadd = csub.add_parser(
        "add", parents=common, epilog=codes, help="create a cluster or replace its requirements"
    )
    cadd.add_argument("cluster_id", metavar="ID", nargs="?", help="the cluster's id (or in --file)")
    cadd.add_argument("--file", metavar="FILE", help="the cluster as a JSON object (the API's shape)")
    cadd.add_argument("--network", dest="networks", action="append", metavar="NAME", help="required; repeat")
    cadd.add_argument(
        "--storage-domain", dest="storage_domains", action="append", metavar="ID", help="repeat"
    )
    cadd.add_argument("--min-version", metavar="VERSION", help="lowest agent version, e.g. 4.5")
    cadd.add_argument("--cpu-flag", dest="cpu_flags", action="append", metavar="FLAG", help="repeat")
    cadd.set_defaults(handler=run_command(cmd_clusters_add))
    csub.add_parser("list", parents=common, epilog=codes, help="list clusters").set_defaults(
        handler=run_command(cmd_clusters_list)
    )
    cdel = csub.add_parser(
        "delete", parents=common, epilog=codes, help="delete a cluster; refused (5) while it has hosts"
    )
    cdel.add_argument("cluster_id", metavar="ID")
    cdel.set_defaults(handler=run_command(cmd_clusters_delete))
