"""Operator commands over the HTTP API: ``hosts …``, ``storage-domains …``, ``placement``,
``vm-runs report``, ``plan``, ``audit``, ``pause``, ``resume`` and ``safety``.

They call the API, never the database, so they work from any machine that reaches it. The URL
comes from ``--api-url`` or AUTORECOVERY_API_URL; the bearer token from ``--token`` or
AUTORECOVERY_TOKEN, else, for an API on loopback, the ``<data_dir>/admin-token`` file that
``autorecovery up`` writes. The token travels only in the Authorization header; it is never
printed. Tables are for people; ``--json`` prints the API's JSON on one line of stdout for
scripts. Progress and errors go to stderr; an error says what the API said and what to do.

Exit codes:
    0  done
    1  the operation failed: the activation ended and the host is not up (the storage domain
       not active); the API erred (5xx)
    2  usage or bad input: a wrong argument, or the API refused the input (400, 413, 422); the
       API URL answers something that is not the API (another server's page)
    3  timeout: ``activate --wait`` ran out of ``--timeout``, or the API did not answer in time
    4  not found (404): no such host, cluster or storage domain (also as a filter, e.g.
       ``hosts list --cluster nope``); nothing to resume
    5  conflict (409): another activation holds the host or domain, it is already up/active, ...
    6  authentication (401: no or bad token) or permission (403: a viewer token on a write)
    7  unreachable: no answer from the API URL, or 502/503 (the API, or its PostgreSQL, Redis
       or broker, is down); nothing was done, retry later

``--watch`` (``hosts list``, ``safety``) and ``audit --follow`` end with 0 on Ctrl-C.

The modules: ``client`` (the API client, the token, failures and exit codes), ``render``
(tables, messages, JSON), ``wait`` (following an activation), ``live`` (``--watch``), one
module per group of commands (``hosts``, ``storage``, ``placement``, ``safety``, ``audit``) and
``parser`` (argparse).
"""

from cli.ops.audit import since_value
from cli.ops.client import ApiClient, ApiFailure, Exit, exit_code_for, failure_from, resolve
from cli.ops.parser import add_operator_commands
from cli.ops.placement import attempt_spec
from cli.ops.safety import duration_s

__all__ = [
    "ApiClient",
    "ApiFailure",
    "Exit",
    "add_operator_commands",
    "attempt_spec",
    "duration_s",
    "exit_code_for",
    "failure_from",
    "resolve",
    "since_value",
]
