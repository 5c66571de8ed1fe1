#!/usr/bin/env python3
"""Benchmark ``monitor.resolve`` (the mapping step of ``watch -r FILE``) against a plain loop.

    .venv/bin/python bench/resolve.py                     # N=300, concurrency 8, 3 rounds
    .venv/bin/python bench/resolve.py --names 1000 --latency 0.002

What it does (progress goes to stderr):

1. serves, from a thread, a fake djangopackages with a fake PyPI on the same 127.0.0.1 server
   (``tests/fakeupstream.py``, ``tests/fake_pypi.py``), every request delayed by
   ``--latency`` seconds (default 5 ms) so that concurrency matters; of the N names about
   60 % are djangopackages slugs whose ``pypi_url`` names them (cloned records), 30 % are on
   PyPI alone (djangopackages answers 404) and 10 % are nowhere (404 on both);
2. each round times, in this process, (a) ``resolve()`` of the N names at ``--concurrency``
   and (b) a plain aiohttp loop at the same concurrency (``Semaphore`` + ``gather``, one
   session) fetching each name's djangopackages record once, ``/api/v4/packages/NAME/``,
   404s included: the least any mapping must ask;
3. as context, (c) the same plain loop over the very requests ``resolve`` sent (what its
   own sequencing, parsing and bookkeeping cost beyond its requests);
4. prints the best of each, the ratio a/b (target: resolve < 2x the plain loop) and a/c, the
   requests ``resolve`` sent per kind and how many records it fetched more than once
   (should be 0). The requests alone put a/b near (requests sent) / N when latency rules.

Figures only; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.fakeupstream

from monitor.resolve import resolve  # noqa: E402
from monitor.sources.djangopackages import DjangoPackagesSource  # noqa: E402
from monitor.sources.pypi import PyPISource  # noqa: E402
from tests.fake_pypi import FakePyPI  # noqa: E402
from tests.fakeupstream import FakeUpstream, clone_records  # noqa: E402


class SlowUpstream(FakeUpstream):
    """The fake, every request delayed by ``latency`` seconds first."""

    latency = 0.005

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        await asyncio.sleep(self.latency)
        return await super()._middleware(request, handler)


def world(n: int) -> tuple[list[str], dict[str, dict[str, Any]], FakePyPI]:
    """The names (shuffled by kind), the djangopackages records and the fake PyPI."""
    n_slug = n * 6 // 10
    n_pypi = n * 3 // 10
    records = clone_records(n_slug)
    for slug, record in records.items():
        record["pypi_url"] = f"https://pypi.org/project/{slug}/"
    pypi = FakePyPI()
    pypi_only = [f"pylib{i}" for i in range(n_pypi)]
    for name in pypi_only:
        pypi.clone("django-minify-html", name)
    nowhere = [f"private{i}" for i in range(n - n_slug - n_pypi)]
    kinds = [list(records), pypi_only, nowhere]
    names = [kind[i] for i in range(n) for kind in kinds if i < len(kind)]
    return names, records, pypi


async def time_resolve(url: str, names: list[str], concurrency: int) -> tuple[float, dict]:
    async with aiohttp.ClientSession() as session:
        djangopackages = DjangoPackagesSource(url, session=session, concurrency=concurrency)
        pypi = PyPISource(url, session=session, concurrency=concurrency)
        start = time.perf_counter()
        found = await resolve(names, djangopackages, pypi, concurrency=concurrency)
        return time.perf_counter() - start, found


async def time_plain(urls: list[str], concurrency: int) -> float:
    async with aiohttp.ClientSession() as session:
        limit = asyncio.Semaphore(concurrency)

        async def get(url: str) -> None:
            async with limit, session.get(url) as response:
                await response.json()

        start = time.perf_counter()
        await asyncio.gather(*(get(url) for url in urls))
        return time.perf_counter() - start


def kind(path: str) -> str:
    if path.startswith("/api/v4/packages/"):
        return "djangopackages records"
    if path.startswith("/api/v4/search/"):
        return "djangopackages searches"
    if path.startswith("/pypi/"):
        return "PyPI JSON API"
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.005, help="seconds per request")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    names, records, pypi = world(args.names)
    SlowUpstream.latency = args.latency
    resolve_times: list[float] = []
    plain_times: list[float] = []
    same_times: list[float] = []
    with SlowUpstream.in_thread(records, apis=[pypi]) as up:
        records_urls = [f"{up.url}/api/v4/packages/{name}/" for name in names]
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
            up.reset()
            seconds, found = asyncio.run(time_resolve(up.url, names, args.concurrency))
            resolve_times.append(seconds)
            sent = Counter(up.requests)
            sent_urls = [f"{up.url}{r.path}?{urlencode(r.query)}" for r in up.log]
            up.reset()
            plain_times.append(asyncio.run(time_plain(records_urls, args.concurrency)))
            same_times.append(asyncio.run(time_plain(sent_urls, args.concurrency)))

    how = Counter(r.how for r in found.values())
    per_kind = Counter[str]()
    for path, count in sent.items():
        per_kind[kind(path)] += count
    twice = sum(1 for p, c in sent.items() if kind(p) == "djangopackages records" and c > 1)
    best_resolve, best_plain, best_same = min(resolve_times), min(plain_times), min(same_times)
    print(
        f"{len(names)} names, concurrency {args.concurrency}, {args.latency * 1000:g} ms"
        f" per request, best of {args.rounds}"
    )
    print(f"  resolved: {', '.join(f'{k} {v}' for k, v in sorted(how.items()))}")
    print(f"  resolve():   {best_resolve:.3f} s")
    print(f"  plain loop:  {best_plain:.3f} s  ({len(names)} djangopackages records)")
    print(f"  ratio:       {best_resolve / best_plain:.2f}x  (target < 2x)")
    print(f"  plain loop over resolve()'s {sum(sent.values())} requests: {best_same:.3f} s")
    print(f"  resolve() / that: {best_resolve / best_same:.2f}x")
    print("  requests resolve() sent:")
    for name, count in sorted(per_kind.items()):
        print(f"    {name:24} {count}")
    print(f"  records fetched twice: {twice}")


if __name__ == "__main__":
    main()
