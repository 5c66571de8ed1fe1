"""Watching what a project depends on (issue 12): ``watch -r FILE`` for requirements,
pyproject and lock files, ``NAME==VERSION`` pins, ``pypi:NAME`` watches and the names a new
user types — through the real CLI against the loopback fakes of all four APIs."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import START, Monitor, webhook_toml
from tests.fakes import SECRET, FakeWebhookReceiver

ALL = ("pypi", "github", "osv")
DEPS = Path(__file__).parent / "fixtures" / "deps"
# What the fake world knows of the fixture files' names: djangopackages packages whose slug
# is their PyPI name, one found only through the search (its slug differs), projects on
# PyPI alone, and private packages nobody knows.
ON_DJANGOPACKAGES = ["django-crispy-forms", "django-allauth", "django-filter", "django-environ"]
SEARCH_ONLY = {"djangorestframework": "django-rest-framework"}
PYPI_ONLY = [
    "django",
    "asgiref",
    "sentry-sdk",
    "crispy-bootstrap5",
    "whitenoise",
    "pillow",
    "celery",
    "redis",
    "psycopg",
    "gunicorn",
    "requests",
    "kombu",
    "sqlparse",
    "tzdata",
]
PRIVATE = ["acme-internal-auth", "acme-billing-client"]


def _add_record(up: Any, slug: str, project: str) -> None:
    record = copy.deepcopy(up.records["django-otp"])
    record.update(
        slug=slug,
        title=slug.replace("-", " ").title(),
        id=1000 + len(up.records),
        pypi_url=f"https://pypi.org/project/{project}/",
        repo_url=f"https://github.com/owner/{slug}",
    )
    up.records[slug] = record
    up.world.github.clone("django/deps", f"owner/{slug}")


def _add_project(up: Any, name: str, versions: tuple[str, ...] = ("1.0.0",)) -> None:
    body = up.world.pypi.clone("django-minify-html", name)
    body["info"]["project_urls"] = {"Source": f"https://github.com/owner/{name}"}
    for i, version in enumerate(versions):
        up.world.pypi.release(name, version, START - timedelta(days=60 - i))
    up.world.github.clone("django/deps", f"owner/{name}")


@pytest.fixture
def world(monitor: Monitor) -> Monitor:
    """The monitor with every source on, and the fixture files' names known upstream."""
    up = monitor.upstream
    for slug in ON_DJANGOPACKAGES:
        _add_record(up, slug, slug)
        _add_project(up, slug)
    for project, slug in SEARCH_ONLY.items():
        _add_record(up, slug, project)
        _add_project(up, project)
    for name in PYPI_ONLY:
        _add_project(up, name)
    monitor.configure(sources=ALL)
    return monitor


def _copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        source = DEPS / name
        target = tmp_path / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    return tmp_path / names[0]


def _alerts_to(monitor: Monitor, hook: FakeWebhookReceiver) -> None:
    """Every source on, alerts sent to the signed webhook receiver ``hook``."""
    monitor.env.update({"WEBHOOK_SECRET": SECRET})
    monitor.configure(
        webhook_toml(hook.hook_url, signed=True),
        sources=ALL,
    )


def _rows(monitor: Monitor, *args: str) -> list[dict[str, Any]]:
    result = monitor.run("watch", "-r", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _watched(rows: list[dict[str, Any]]) -> dict[str, str | None]:
    return {r["watch"]: r["pinned"] for r in rows if r["action"] in ("added", "updated")}


def test_a_requirements_file_watches_every_public_package_with_its_pin(world: Monitor) -> None:
    path = _copy(world.tmp_path, "requirements.txt", "requirements", "constraints.txt")
    rows = _rows(world, str(path))
    assert _watched(rows) == {
        "pypi:django": "5.1.4",  # on PyPI alone; the pin of the last `django==` line
        "django-environ": "0.11.2",  # from the included requirements/base.txt
        "pypi:asgiref": "3.8.1",  # unpinned there, pinned by the constraints file
        "pypi:sentry-sdk": None,  # a range is not a pin
        "django-otp": "1.7.0",  # typed Django_OTP==1.7.0, with a marker
        "django-crispy-forms": None,
        "pypi:crispy-bootstrap5": "2024.10",
        "django-allauth": "65.3.1",  # extras dropped
        "django-filter": None,
        "django-rest-framework": "3.15.2",  # found through the search; hashes ignored
        "pypi:whitenoise": "6.8.2",
        "pypi:pillow": None,
        "pypi:celery": "5.4.0",
        "pypi:redis": None,
        "pypi:psycopg": "3.2.3",
        "pypi:gunicorn": "23.0.0",
        "pypi:requests": "2.32.3",
    }
    skipped = {r["requirement"].split()[0]: r["reason"] for r in rows if r["action"] == "skipped"}
    assert skipped["acme-internal-auth==2.3.1"].startswith("not on djangopackages or PyPI")
    assert skipped["acme_billing.client>=0.9,<1"].startswith("not on djangopackages or PyPI")
    assert skipped["-e"] == "editable install (-e)"
    assert skipped["django-money"] == "URL requirement"
    assert skipped["./vendor/acme-theme"] == "local path"
    assert "not a valid requirement" in skipped["django-cors-headers=>4.6"]

    listed = {item["slug"]: item for item in world.json("list")}
    assert listed["django-otp"]["pinned"] == "1.7.0"
    assert listed["pypi:requests"]["origin"] == str(path.resolve())
    assert listed["pypi:requests"]["sources"]["github"] == "owner/requests"
    assert listed["django-rest-framework"]["sources"]["pypi"] == "djangorestframework"


def test_importing_again_changes_nothing_and_prune_unwatches_what_left(world: Monitor) -> None:
    path = _copy(world.tmp_path, "requirements.txt", "requirements", "constraints.txt")
    _rows(world, str(path))
    up = world.upstream
    up.reset()
    again = world.run("watch", "-r", str(path))
    assert again.exit_code == 0
    assert "nothing changed (17 already watched as they are)" in again.stdout
    # only the private names are asked about again: every other name is known by its watch
    for name in [*ON_DJANGOPACKAGES, *SEARCH_ONLY, *PYPI_ONLY, "django-otp"]:
        assert f"/pypi/{name}/json" not in up.requests, name
        assert f"/api/v4/packages/{name}/" not in up.requests, name
    assert "/pypi/acme-internal-auth/json" in up.requests

    text = path.read_text()
    path.write_text(text.replace('gunicorn==23.0.0 ; sys_platform == "linux"\n', ""))
    kept = _rows(world, str(path))
    assert [r["watch"] for r in kept if r["action"] == "no longer in the file"] == ["pypi:gunicorn"]
    assert "pypi:gunicorn" in {i["slug"] for i in world.json("list")}
    pruned = _rows(world, str(path), "--prune")
    assert [r["watch"] for r in pruned if r["action"] == "removed"] == ["pypi:gunicorn"]
    assert "pypi:gunicorn" not in {i["slug"] for i in world.json("list")}


def test_a_new_pin_in_the_file_updates_the_watch(world: Monitor) -> None:
    path = _copy(world.tmp_path, "requirements.txt", "requirements", "constraints.txt")
    _rows(world, str(path))
    path.write_text(path.read_text().replace("Django_OTP==1.7.0", "Django_OTP==1.8.0"))
    rows = _rows(world, str(path))
    (row,) = [r for r in rows if r["watch"] == "django-otp"]
    assert (row["action"], row["pinned"]) == ("updated", "1.8.0")
    assert row["reason"] == "pinned 1.8.0 (was 1.7.0)"


def test_a_pyproject_with_dependency_groups(world: Monitor) -> None:
    for name in ("pywin32", "django-storages", "boto3", "django-debug-toolbar", "pytest"):
        _add_project(world.upstream, name)
    path = _copy(world.tmp_path, "pyproject.toml")
    watched = _watched(_rows(world, str(path)))
    assert watched["pypi:django"] == "5.1.4"
    assert watched["django-rest-framework"] == "3.15.2"
    assert watched["pypi:django-debug-toolbar"] == "4.4.6"  # from a dependency group
    assert watched["pypi:pytest"] is None
    assert "pypi:ruff" not in watched  # nobody knows it here: skipped


def test_a_uv_lock_pins_every_locked_package(world: Monitor) -> None:
    path = _copy(world.tmp_path, "uv.lock")
    assert _watched(_rows(world, str(path))) == {
        "pypi:asgiref": "3.8.1",
        "pypi:celery": "5.4.0",
        "pypi:django": "5.1.4",
        "django-otp": "1.5.4",
        "pypi:kombu": "5.4.2",
        "pypi:redis": "5.2.1",
        "pypi:sqlparse": "0.5.3",
        "pypi:tzdata": "2024.2",
    }


def test_a_bad_file_is_bad_usage(monitor: Monitor) -> None:
    result = monitor.run("watch", "-r", str(monitor.tmp_path / "nope.txt"))
    assert result.exit_code == 2 and "nope.txt" in result.stderr


# -- pins ---------------------------------------------------------------------------------


def test_a_yanked_or_vulnerable_pin_fires_and_upgrading_it_resolves(world: Monitor) -> None:
    pypi, osv = world.upstream.world.pypi, world.upstream.world.osv
    pypi.release("django-otp", "1.6.0", START - timedelta(days=90))
    pypi.release("django-otp", "1.7.0", START - timedelta(days=30))  # the latest again
    assert world.run("watch", "django-otp==1.6.0").exit_code == 0
    pypi.yank("django-otp", "1.6.0")
    osv.add_vuln("PYSEC-2026-1", "django-otp", ["1.6.0"], "1.7.0", "Token reuse")
    world.clock.advance(hours=7)
    fired = world.json("check")["transitions"]
    assert {(t["rule"], t["status"]) for t in fired} == {
        ("pinned-yanked", "firing"),
        ("vulnerable-version", "firing"),
    }

    upgraded = world.run("watch", "django-otp", "--pin", "1.7.0")
    assert "updated django-otp: pinned 1.7.0 (was 1.6.0)" in upgraded.stdout
    world.clock.advance(minutes=1)  # a new pin makes the watch due now
    resolved = world.json("check")["transitions"]
    assert {(t["rule"], t["status"]) for t in resolved} == {
        ("pinned-yanked", "resolved"),
        ("vulnerable-version", "resolved"),
    }


def test_the_pin_is_in_list_and_the_vulnerability_message(
    world: Monitor, hook: FakeWebhookReceiver
) -> None:
    _alerts_to(world, hook)
    world.upstream.world.osv.add_vuln("PYSEC-2026-2", "django-otp", ["1.5.0"], "1.6.0", "Bad")
    assert world.run("watch", "django-otp==1.5.0").exit_code == 0
    (item,) = world.json("list")
    assert item["pinned"] == "1.5.0"
    table = world.run("list").stdout
    assert "1.5.0" in table.splitlines()[1]
    (event,) = hook.events
    (alert,) = event["data"]["alerts"]
    assert alert["rule"] == "vulnerable-version" and "1.5.0" in alert["summary"]


# -- names --------------------------------------------------------------------------------


def test_a_name_not_on_djangopackages_hints_its_pypi_watch(world: Monitor) -> None:
    result = world.run("watch", "requests")
    assert result.exit_code == 1
    assert "package 'requests' not found on djangopackages" in result.stderr
    assert "monitor watch pypi:requests" in result.stderr
    assert world.json("list") == []


def test_a_pypi_watch_links_to_pypi_and_github(world: Monitor, hook: FakeWebhookReceiver) -> None:
    _alerts_to(world, hook)
    result = world.run("watch", "pypi:Requests")
    assert result.exit_code == 0, result.output
    assert "watching pypi:requests (1.0.0 on PyPI; asked for pypi:Requests)" in result.stdout
    assert not any(p.startswith("/api/v4/packages/") for p in world.upstream.requests)
    world.upstream.world.github.archive("owner/requests")
    world.clock.advance(hours=7)
    report = world.json("check")
    assert [(t["rule"], t["package"]) for t in report["transitions"]] == [
        ("repo-archived", "pypi:requests")
    ]
    (event,) = hook.events
    (alert,) = event["data"]["alerts"]
    assert alert["links"]["pypi"] == "https://pypi.org/project/requests/"
    assert alert["links"]["repo"] == "https://github.com/owner/requests"
    assert alert["links"]["djangopackages"] is None


def test_an_unknown_pypi_project_is_not_watched(world: Monitor) -> None:
    result = world.run("watch", "pypi:acme-internal-auth")
    assert result.exit_code == 1
    assert "package 'acme-internal-auth' not found on PyPI" in result.stderr
    assert world.json("list") == []


def test_a_slug_typed_another_way_is_found_and_stored_under_its_name(world: Monitor) -> None:
    result = world.run("watch", "Django_OTP==1.7.0")
    assert result.exit_code == 0, result.output
    assert "watching django-otp (" in result.stdout and "asked for Django_OTP" in result.stdout
    assert [(i["slug"], i["pinned"]) for i in world.json("list")] == [("django-otp", "1.7.0")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["django-otp>=1.0"], "only an exact pin"),
        (["a", "b", "--pin", "1.0"], "--pin goes with exactly one NAME"),
        (["django-otp==1.0", "--pin", "2.0"], "name two versions"),
        (["-r", "x.txt", "django-otp"], "one of them"),
        (["django-otp", "--prune"], "--prune and --json go with -r FILE"),
        (["pypi:bad name"], "not a PyPI project name"),
    ],
)
def test_name_usage_errors(monitor: Monitor, args: list[str], message: str) -> None:
    result = monitor.run("watch", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_the_digest_shows_pins_and_pypi_watches(world: Monitor) -> None:
    assert world.run("watch", "django-otp==1.6.0", "pypi:requests").exit_code == 0
    world.clock.advance(hours=1)
    text = world.run("digest").stdout
    assert "1.7.0 (you run 1.6.0)" in text  # a quiet week: the one-line table
    assert "requests (pypi:requests)  1.0.0 " in text
    html_path = world.tmp_path / "digest.html"
    assert world.run("digest", "--html", str(html_path)).exit_code == 0
    html = html_path.read_text()
    assert "(you run 1.6.0)" in html
    assert 'href="https://pypi.org/project/requests/"' in html
    assert "/packages/p/pypi:requests/" not in html
