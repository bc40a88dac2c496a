"""`python -m bench pulls`: many SCIM apps behind network latency, pulled one after
another and `pull_concurrency` at a time, in the same run on the same servers.

Each app is a real scim2-server on 127.0.0.1 in a process of its own (`bench.slow_scim`,
so that the servers' work is not serialised by one interpreter), seeded with `size`
users, holding every request for `latency` seconds, as an API across the internet
would. The check runs as `python -m reconciler check` in a process of its own, three
ways: the first app alone (one app's pull), every app with
`pull_concurrency: 1`, and every app with `pull_concurrency: width`. The figure is its
`pull` phase: the time the check spends waiting for pulls.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import orjson

from bench import runner
from reconciler import demo
from reconciler.testing.scim_server import seed, start_scim_server

POLICY = runner.POLICY.replace(
    f"identity_source: {runner.IDENTITY_SOURCE}", "identity_source: corp"
)


def delayed(latency: float) -> Callable[[WSGIApplication], WSGIApplication]:
    """A middleware holding every request for `latency` seconds before answering it."""

    def wrap(inner: WSGIApplication) -> WSGIApplication:
        def answer(environ: WSGIEnvironment, start: StartResponse) -> Any:
            time.sleep(latency)
            return inner(environ, start)

        return answer

    return wrap


@contextmanager
def server_process(token: str, latency: float) -> Iterator[str]:
    """A slow scim2-server in a process of its own (`bench.slow_scim`); its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.slow_scim", token, str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url:
            raise runner.BenchError("a SCIM server process did not start")
        yield url
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def users(size: int, app: int) -> list[dict[str, Any]]:
    return [
        demo.scim_user(f"user{n}", f"user{n}@{demo.DOMAIN}", "User", f"{app}-{n}")
        for n in range(size)
    ]


def pull_seconds(repo: Path, env: dict[str, str], *apps: str) -> float:
    """The `pull` phase of one check of `apps` (every app when none)."""
    argv = [sys.executable, "-m", "reconciler", "check", "--repo", str(repo), "--format", "json"]
    argv += [arg for app in apps for arg in ("--app", app)]
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, check=False)
    if done.returncode not in (0, 4):
        raise runner.BenchError(f"check failed: {done.stderr.decode(errors='replace')[-2000:]}")
    phases = orjson.loads(done.stdout)["timings"]["phases"]
    return float(phases["pull"]["seconds"])


def measure(
    apps: int, size: int, latency: float, width: int, work: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Seed `apps` servers and time the three checks."""
    names = [f"app{n:03d}" for n in range(apps)]
    env = {"IDP_TOKEN": secrets.token_hex(8)}
    with ExitStack() as stack:
        idp = stack.enter_context(start_scim_server(env["IDP_TOKEN"]))
        idp.seed(users(size, 0))
        sections = []
        for index, name in enumerate(names):
            progress(f"pulls: seeding {name} ({index + 1}/{apps})")
            token = secrets.token_hex(8)
            url = stack.enter_context(server_process(token, latency))
            seed(url, token, users(size, index), ())
            env[f"{name.upper()}_TOKEN"] = token
            sections.append(
                f"  {name}:\n    type: scim\n    url: {url}\n"
                f"    token_env: {name.upper()}_TOKEN\n    page_size: 1000\n"
            )
        results: dict[str, Any] = {"apps": apps, "size": size, "latency": latency, "width": width}
        for label, concurrency, only in (
            ("one_app", 1, names[:1]),
            ("sequential", 1, []),
            ("parallel", width, []),
        ):
            repo = work / label
            runner.make_access_repo(repo)
            (repo / "policies" / "default.yaml").write_text(POLICY, encoding="utf-8")
            config = (
                "version: 1\nforge:\n  type: local\n"
                f"defaults:\n  mode: disable\n  pull_concurrency: {concurrency}\n"
                f"identity_sources:\n  corp:\n    type: scim\n    url: {idp.url}\n"
                "    token_env: IDP_TOKEN\napps:\n" + "".join(sections)
            )
            (repo / "reconciler.yaml").write_text(config, encoding="utf-8")
            runner.git(repo, "commit", "-q", "-am", "the estate")
            progress(f"pulls: checking ({label})")
            results[label] = pull_seconds(repo, {**env, **runner.GIT_IDENTITY}, *only)
    results["ratio_to_one_app"] = results["parallel"] / results["one_app"]
    results["speedup"] = results["sequential"] / results["parallel"]
    return results


def render(results: dict[str, Any]) -> str:
    return "\n".join(
        [
            "## Pulls in parallel",
            "",
            "| apps, users each | latency | one app | all, one at a time | all, "
            f"{results['width']} at a time | parallel ÷ one app | speed-up |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| {results['apps']}, {results['size']:,} | {results['latency'] * 1000:.0f} ms "
            f"| {results['one_app']:.2f} s | {results['sequential']:.2f} s "
            f"| {results['parallel']:.2f} s | {results['ratio_to_one_app']:.2f} "
            f"| {results['speedup']:.1f} times |",
            "",
        ]
    )
