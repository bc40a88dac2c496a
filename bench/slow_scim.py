"""`python -m bench.slow_scim TOKEN LATENCY [REMEMBER]`: one scim2-server on 127.0.0.1 in a
process of its own, holding every request for LATENCY seconds (and with REMEMBER 1,
answering a GET it answered before from memory: `bench.pulls.remembered`); prints its
base URL, then serves until its standard input closes. `python -m bench pulls` starts
one per app, so that the servers' own work runs beside the check's instead of in one
interpreter."""

from __future__ import annotations

import sys
from wsgiref.types import WSGIApplication

from bench.pulls import delayed, remembered
from reconciler.testing.scim_server import start_scim_server


def main() -> None:
    token, latency = sys.argv[1], float(sys.argv[2])
    remember = len(sys.argv) > 3 and sys.argv[3] == "1"

    def middleware(inner: WSGIApplication) -> WSGIApplication:
        served = remembered(inner) if remember else inner
        return delayed(latency)(served)

    with start_scim_server(token, middleware=middleware) as server:
        sys.stdout.write(server.url + "\n")
        sys.stdout.flush()
        sys.stdin.read()  # until the benchmark closes it


if __name__ == "__main__":
    main()
