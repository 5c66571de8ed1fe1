"""The five djangopackages fixtures as PyPI, GitHub and OSV also know them: each record's
PyPI project is a copy of a real PyPI body (django-minify-html's) under the record's name and
version, released 30 days before the test's start, and its repository a copy of a real GitHub
body (django/deps') under the record's OWNER/REPO. OSV knows no vulnerability until a test
adds one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import START
from tests.fake_github import FakeGitHub
from tests.fake_osv import FakeOSV
from tests.fake_pypi import FakePyPI


class World:
    def __init__(self, records: dict[str, dict[str, Any]]):
        self.pypi = FakePyPI()
        self.github = FakeGitHub()
        self.osv = FakeOSV()
        for slug, record in records.items():
            self.pypi.clone("django-minify-html", slug)
            version = record.get("pypi_version") or "1.0.0"
            self.pypi.release(slug, version, START - timedelta(days=30))
            self.github.clone("django/deps", self.repo(record))

    @staticmethod
    def repo(record: dict[str, Any]) -> str:
        return str(record["repo_url"]).removeprefix("https://github.com/").strip("/")

    @property
    def apis(self) -> list[Any]:
        return [self.pypi, self.github, self.osv]
