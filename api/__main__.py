"""``python -m api``: serve the HTTP API with settings from the environment."""

from __future__ import annotations

import logging
import sys

from api.server import serve
from autorecovery.settings import load_settings
from models.errors import InvalidInput


def main() -> int:
    """Serve until stopped; exit 2 with the variable's name when the configuration is wrong."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(load_settings())
    except InvalidInput as exc:
        print(f"autorecovery api: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
