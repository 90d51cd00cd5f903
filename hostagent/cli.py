"""The agent's command line: ``autorecovery-agent`` (its own distribution) and ``autorecovery agent``.

Only the standard library at import: the parser is built without libvirt or the web stack.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's options, shared by both commands."""
    parser.add_argument(
        "--config", type=Path, default=Path("/etc/autorecovery/agent.toml"), help="its TOML file"
    )
    parser.add_argument("--bind", default=None, help="address to listen on (default: the config's)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the config's; 0: a free one)")
    parser.add_argument(
        "--check", action="store_true", help="check the setup, print a fresh report, exit (changes nothing)"
    )
    parser.add_argument(
        "--new-state",
        action="store_true",
        help="create a new agent state (a new state_id, fences from 0; an old file is kept aside): "
        "on first install, or knowingly after the state was lost. Without it a missing or "
        "unusable state refuses to start",
    )


def run_agent(args: argparse.Namespace) -> int:
    """Check the setup (``--check``) or serve until stopped.

    Raises:
        InvalidInput: a setting, the token or the state is wrong (named).
    """
    try:
        from hostagent.config import load_config
        from hostagent.daemon import check, run
        from hostagent.libvirt_hypervisor import LibvirtHypervisor  # noqa: F401 - fail early, with advice
    except ImportError as exc:  # libvirt-python comes with the agent's distribution
        print(f"autorecovery-agent: needs {exc.name}: pip install autorecovery-agent", file=sys.stderr)
        return EXIT_ERROR
    config = load_config(args.config)
    if args.check:
        return check(config)
    logging.getLogger().setLevel(logging.INFO)
    run(config, bind=args.bind, port=args.port, new_state=args.new_state)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``autorecovery-agent``: run the host agent; return the exit code."""
    from models.errors import InvalidInput

    parser = argparse.ArgumentParser(
        prog="autorecovery-agent", description="autorecovery's host agent (agent protocol v2, libvirt)"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_agent(args)
    except KeyboardInterrupt:
        return 130
    except InvalidInput as exc:
        print(f"autorecovery-agent: {exc.field}: {exc.message}", file=sys.stderr)
        logging.getLogger("hostagent").error("refusing to start: %s: %s", exc.field, exc.message)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
