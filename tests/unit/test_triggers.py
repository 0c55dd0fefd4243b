"""Pure logic of the triggers: skip markers, buildFilter globs, webhook verification and
parsing in GitHub's and GitLab's real payload shapes."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from shipyard.triggers.filters import BuildFilter, matches, skip_marker, touches
from shipyard.triggers.webhooks import (
    Ignored,
    Push,
    delivery_id,
    github_valid,
    gitlab_valid,
    parse_github,
    parse_gitlab,
)


@pytest.mark.parametrize(
    ("message", "marker"),
    [("fix [skip render]", "[skip render]"), ("[Render Skip] docs", "[render skip]"),
     ("x [skip shipyard]", "[skip shipyard]"), ("[shipyard skip]", "[shipyard skip]"),
     ("skip render", ""), ("[skip ci]", "")],
)  # fmt: skip
def test_skip_markers(message: str, marker: str) -> None:
    assert skip_marker(message) == marker


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [("src/**", "src/a/b.py", True), ("src/**", "srcx/a.py", False), ("**/*.md", "README.md", True),
     ("**/*.md", "docs/a/b.md", True), ("*.md", "docs/a.md", False), ("docs", "docs/x.txt", True),
     ("./api/*.py", "api/app.py", True), ("api/?.py", "api/ab.py", False),
     ("web/[ab].js", "web/a.js", True), (".github/**", ".github/workflows/ci.yml", True)],
)  # fmt: skip
def test_globs(pattern: str, path: str, hit: bool) -> None:
    assert matches(pattern, path) is hit


def test_touches_follows_paths_ignored_paths_and_root_dir() -> None:
    backend = BuildFilter(paths=("backend/**",), ignored_paths=("**/*.md",))
    assert touches(backend, "", ["backend/app.py"])
    assert not touches(backend, "", ["backend/README.md"])
    assert not touches(backend, "", ["frontend/app.js"])
    assert touches(backend, "", None)  # unknown change: deploy
    assert touches(BuildFilter(), "api", ["api/x.py"]) and not touches(
        BuildFilter(), "api", ["web/x"]
    )
    assert touches(BuildFilter(), "", ["anything"])
    assert touches(BuildFilter(ignored_paths=("docs/**",)), "", ["docs/a", "src/b"])


SECRET = "s3cret"


def signed(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def github_payload(ref: str = "refs/heads/main", after: str = "a" * 40) -> bytes:
    return json.dumps({
        "ref": ref, "before": "b" * 40, "after": after,
        "head_commit": {"id": after, "message": "Add feature"},
        "commits": [{"id": after, "message": "Add feature", "added": ["a.py"],
                     "modified": ["b.py"], "removed": ["c.py"]}],
        "repository": {"clone_url": "https://github.com/o/r.git"},
    }).encode()  # fmt: skip


def test_github_signature_is_checked_in_constant_time_on_the_exact_body() -> None:
    body = github_payload()
    assert github_valid(SECRET, body, signed(body))
    assert not github_valid(SECRET, body + b" ", signed(body))
    assert not github_valid(SECRET, body, None)
    assert not github_valid(SECRET, body, "sha1=" + "0" * 40)
    assert not github_valid("other", body, signed(body))


def test_github_push_is_parsed_and_other_events_ignored() -> None:
    push = parse_github("push", github_payload())
    assert push == Push("main", "a" * 40, "Add feature", ("a.py", "b.py", "c.py"),
                        "https://github.com/o/r.git")  # fmt: skip
    assert isinstance(parse_github("ping", b"{}"), Ignored)
    assert isinstance(parse_github("pull_request", b"{}"), Ignored)
    assert isinstance(parse_github("push", github_payload("refs/tags/v1")), Ignored)
    assert isinstance(parse_github("push", github_payload(after="0" * 40)), Ignored)
    assert isinstance(parse_github("push", b"not json"), Ignored)


def test_gitlab_token_and_push() -> None:
    assert gitlab_valid(SECRET, SECRET) and not gitlab_valid(SECRET, "x")
    assert not gitlab_valid(SECRET, None)
    body = json.dumps({
        "object_kind": "push", "ref": "refs/heads/dev", "before": "b" * 40, "after": "c" * 40,
        "checkout_sha": "c" * 40, "total_commits_count": 1,
        "commits": [{"id": "c" * 40, "message": "wip [skip render]\n", "added": [],
                     "modified": ["x"], "removed": []}],
        "project": {"git_http_url": "https://gitlab.com/o/r.git"},
    }).encode()  # fmt: skip
    push = parse_gitlab("Push Hook", body)
    assert isinstance(push, Push) and push.branch == "dev" and push.files == ("x",)
    assert skip_marker(push.message) == "[skip render]"
    assert isinstance(parse_gitlab("Tag Push Hook", body), Ignored)


def test_a_truncated_commit_list_means_unknown_files() -> None:
    data = json.loads(github_payload())
    data["total_commits_count"] = 50
    push = parse_gitlab("Push Hook", json.dumps(data).encode())
    assert isinstance(push, Push) and push.files is None


def test_delivery_ids() -> None:
    assert delivery_id({"x-github-delivery": "1"}) == "x-github-delivery:1"
    assert delivery_id({"x-gitlab-event-uuid": "u"}) == "x-gitlab-event-uuid:u"
    assert delivery_id({}) == ""
