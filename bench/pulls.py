"""`python -m bench pulls`: many SCIM apps behind network latency, pulled one after
another and `pull_concurrency` at a time, in the same run on the same servers.

Each app is a real scim2-server on 127.0.0.1 in a process of its own (`bench.slow_scim`,
so that the servers' work is not serialised by one interpreter), seeded with `size`
users, holding every request for `latency` seconds, as an API across the internet
would. The check runs as `python -m reconciler check` in a process of its own, three
ways: the first app alone (one app's pull), every app with
`pull_concurrency: 1`, and every app with `pull_concurrency: width`. The figure is how
long it pulled the apps, from the first app's pull starting to the last one's ending
(`timings.pull_span_seconds`), beside its wall time.

With `remember`, each server answers a GET it answered before from memory (its own
answer, `remembered`), and an untimed check warms them up first: scim2-server spends
tens of milliseconds of CPU on a page, and 50 servers on a 2-core machine would
otherwise measure the cores, not the latency a real SaaS API adds on its own machines.
"""

from __future__ import annotations

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


def remembered(inner: WSGIApplication) -> WSGIApplication:
    """A middleware answering a GET it has answered before from memory (the server's
    own answer, kept until any other method changes the data): with it, the servers'
    work is done once, in the warm-up, and a timed pull waits only for the latency."""
    answers: dict[tuple[str, str, str], tuple[str, list[tuple[str, str]], bytes]] = {}

    def answer(environ: WSGIEnvironment, start: StartResponse) -> Any:
        if environ["REQUEST_METHOD"] != "GET":
            answers.clear()
            return inner(environ, start)
        key = (environ["PATH_INFO"], environ["QUERY_STRING"], environ.get("HTTP_AUTHORIZATION", ""))
        if key not in answers:
            kept: dict[str, Any] = {}

            def keep(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
                kept.update(status=status, headers=headers)
                return lambda _: None

            served = inner(environ, keep)
            try:
                body = b"".join(served)
            finally:
                getattr(served, "close", lambda: None)()
            answers[key] = (kept["status"], kept["headers"], body)
        status, headers, body = answers[key]
        start(status, headers)
        return [body]

    return answer


@contextmanager
def server_process(token: str, latency: float, remember: bool = False) -> Iterator[str]:
    """A slow scim2-server in a process of its own (`bench.slow_scim`); its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.slow_scim", token, str(latency), str(int(remember))],
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


def pull_seconds(repo: Path, env: dict[str, str], *apps: str) -> tuple[float, float]:
    """How long one check of `apps` (every app when none) pulled them, from the first
    pull's start to the last one's end, and its wall time."""
    argv = [sys.executable, "-m", "reconciler", "check", "--repo", str(repo), "--format", "json"]
    argv += [arg for app in apps for arg in ("--app", app)]
    started = time.perf_counter()
    done = subprocess.run(argv, env={**runner.check_env(), **env}, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 4):
        raise runner.BenchError(f"check failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return float(orjson.loads(done.stdout)["timings"]["pull_span_seconds"]), wall


def measure(
    apps: int,
    size: int,
    latency: float,
    width: int,
    work: Path,
    progress: Callable[[str], None],
    remember: bool = False,
) -> dict[str, Any]:
    """Seed `apps` servers and time the three checks (after an untimed warm-up check
    when the servers `remember` their answers)."""
    names = [f"app{n:03d}" for n in range(apps)]
    env = {"IDP_TOKEN": secrets.token_hex(8)}
    with ExitStack() as stack:
        idp = stack.enter_context(start_scim_server(env["IDP_TOKEN"]))
        idp.seed(users(size, 0))
        sections = []
        for index, name in enumerate(names):
            progress(f"pulls: seeding {name} ({index + 1}/{apps})")
            token = secrets.token_hex(8)
            url = stack.enter_context(server_process(token, latency, remember))
            seed(url, token, users(size, index), ())
            env[f"{name.upper()}_TOKEN"] = token
            sections.append(
                f"  {name}:\n    type: scim\n    url: {url}\n"
                f"    token_env: {name.upper()}_TOKEN\n    page_size: 1000\n"
            )
        results: dict[str, Any] = {
            "apps": apps,
            "size": size,
            "latency": latency,
            "width": width,
            "answers": "remembered" if remember else "computed",
        }
        warm_up: list[tuple[str, int, list[str]]] = [("warm_up", width, [])] if remember else []
        for label, concurrency, only in (
            *warm_up,
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
            pull, wall = pull_seconds(repo, {**env, **runner.GIT_IDENTITY}, *only)
            if label != "warm_up":
                results[label], results[f"{label}_wall"] = pull, wall
    results["ratio_to_one_app"] = results["parallel"] / results["one_app"]
    results["speedup"] = results["sequential"] / results["parallel"]
    return results


def render(results: dict[str, Any]) -> str:
    """How long the apps were pulled and, in brackets, the whole check's wall time."""

    def both(label: str) -> str:
        return f"{results[label]:.2f} s ({results[f'{label}_wall']:.2f} s)"

    return "\n".join(
        [
            "## Pulls in parallel",
            "",
            "| apps, users each | latency | servers' answers | one app | all, one at a time "
            f"| all, {results['width']} at a time | parallel ÷ one app | speed-up |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
            f"| {results['apps']}, {results['size']:,} | {results['latency'] * 1000:.0f} ms "
            f"| {results.get('answers', 'computed')} | {both('one_app')} | {both('sequential')} "
            f"| {both('parallel')} | {results['ratio_to_one_app']:.2f} "
            f"| {results['speedup']:.1f} times |",
            "",
            "Each figure is how long the check pulled the apps (from the first pull's start to "
            "the last one's end), then in brackets the whole check's wall time.",
            "",
        ]
    )
