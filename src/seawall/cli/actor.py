"""Who the CLI acts as in audit records and a model's history: `cli:<login name>`.

The login name is `getpass.getuser()`'s: `LOGNAME`, `USER`, `LNAME` or `USERNAME`, else the
password database. It attributes a change; it does not authenticate one. Whoever can write the
database can write as anyone, so at the CLI the registry's four-eyes rule stops mistakes (an
author approving their own version by habit); against people it is the admin API, with API keys
and roles, that holds.
"""

from __future__ import annotations

import getpass

__all__ = ["cli_actor"]


def cli_actor() -> str:
    """`cli:<login name>`, or `cli:unknown` where the environment names no user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment (a bare container)
        return "cli:unknown"
