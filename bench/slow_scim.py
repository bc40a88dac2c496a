"""`python -m bench.slow_scim TOKEN LATENCY`: one scim2-server on 127.0.0.1 in a process of
its own, holding every request for LATENCY seconds; prints its base URL, then serves
until its standard input closes. `python -m bench pulls` starts one per app, so that
the servers' own work runs beside the check's instead of in one interpreter."""

from __future__ import annotations

import sys

from bench.pulls import delayed
from reconciler.testing.scim_server import start_scim_server


def main() -> None:
    token, latency = sys.argv[1], float(sys.argv[2])
    with start_scim_server(token, middleware=delayed(latency)) as server:
        sys.stdout.write(server.url + "\n")
        sys.stdout.flush()
        sys.stdin.read()  # until the benchmark closes it


if __name__ == "__main__":
    main()
