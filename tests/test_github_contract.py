"""The GitHub stand-in against GitHub's documented contract (tests/github_contract/), so it
cannot drift into a mock that only agrees with our own client.

`github_contract/` was written from GitHub's REST documentation and OpenAPI description,
not from the stand-in. Here a whole submit story runs against the stand-in (fork, re-run,
maintainer branch, errors, merge), and then:

- every request it answered matches a documented endpoint, with a documented status code,
  and a body that validates against that status's schema;
- every documented endpoint of the list was exercised, with its success status;
- every field github3.py reads with `[]` (so would crash without) is one GitHub documents
  as required: our client relies on nothing GitHub may leave out;
- the merge's push webhook validates against the push payload schema and is signed as
  GitHub documents.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import github3
import github3.exceptions as gx
import jsonschema
import pytest
from github3 import git as gh_git
from github3 import pulls as gh_pulls
from github3.repos import contents as gh_contents
from github3.repos import repo as gh_repo

from deepmarket.cli import main
from tests.submit_helpers import AUTHOR_TOKEN, MAINTAINER_TOKEN, fill_module, make_world

CONTRACT = Path(__file__).parent / "github_contract"
RESPONSES = json.loads((CONTRACT / "responses.schema.json").read_text())
ENDPOINTS = json.loads((CONTRACT / "endpoints.json").read_text())
PUSH = json.loads((CONTRACT / "push.schema.json").read_text())


def test_the_contract_files_are_valid_json_schemas():
    jsonschema.Draft202012Validator.check_schema(RESPONSES)
    jsonschema.Draft202012Validator.check_schema(PUSH)
    names = set(RESPONSES["$defs"])
    for key, endpoint in ENDPOINTS["endpoints"].items():
        assert re.fullmatch(r"(GET|POST|PATCH|PUT|DELETE) /\S+", key)
        assert endpoint["docs"].startswith("https://docs.github.com/")
        for ref in endpoint["responses"].values():
            refs = (
                ref
                if isinstance(ref, list)
                else [ref.get("array")]
                if isinstance(ref, dict)
                else [ref]
            )
            assert set(refs) - {""} <= names, key


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {
        "$schema": RESPONSES["$schema"],
        "$defs": RESPONSES["$defs"],
        "$ref": f"#/$defs/{name}",
    }
    return jsonschema.Draft202012Validator(schema)


def _template(key: str) -> tuple[str, re.Pattern[str]]:
    method, path = key.split(" ", 1)
    regex = re.escape(path)
    for name in re.findall(r"\{(\w+)\}", path):
        regex = regex.replace(
            re.escape(f"{{{name}}}"), "(.+)" if name in ("ref", "path") else "([^/]+)"
        )
    return method, re.compile(f"^{regex}$")


def endpoint_of(method: str, path: str) -> str | None:
    # The most specific template wins (literal segments beat {ref}/{path} wildcards).
    matches = [
        key
        for key in ENDPOINTS["endpoints"]
        if (m := _template(key))[0] == method and m[1].match(path)
    ]
    return min(matches, key=lambda k: k.count("{"), default=None)


def check_body(key: str, status: int, body: Any) -> None:
    documented = ENDPOINTS["endpoints"][key]["responses"]
    ref = documented.get(str(status), ENDPOINTS["common"].get(str(status)))
    assert ref is not None, f"{key} answered {status}, which GitHub does not document for it"
    if ref == "":
        assert body is None, f"{key} {status} must have no body"
        return
    if isinstance(ref, dict):  # an array of one kind
        assert isinstance(body, list), f"{key} {status}: expected an array"
        for item in body:
            _validator(ref["array"]).validate(item)
        return
    options = ref if isinstance(ref, list) else [ref]
    errors = []
    for name in options:
        try:
            _validator(name).validate(body)
            return
        except jsonschema.ValidationError as exc:
            errors.append(f"{name}: {exc.message} at {list(exc.absolute_path)}")
    pytest.fail(f"{key} {status} body matches none of {options}: {errors}")


# --- which fields github3.py reads ------------------------------------------------------


class Recording(dict):
    """A response body that notes each key github3.py reads, and how: d[k] or d.get(k)."""

    def __init__(self, data: dict, path: tuple, log: set) -> None:
        super().__init__(data)
        self._path, self._log = path, log

    def _wrap(self, key: str, value: Any) -> Any:
        path = (*self._path, key)
        if isinstance(value, dict):
            return Recording(value, path, self._log)
        if isinstance(value, list):
            return [
                Recording(v, (*path, "[]"), self._log) if isinstance(v, dict) else v for v in value
            ]
        return value

    def __getitem__(self, key: str) -> Any:
        self._log.add(("[]", (*self._path, key)))
        return self._wrap(key, super().__getitem__(key))

    def get(self, key: str, default: Any = None) -> Any:
        self._log.add(("get", (*self._path, key)))
        return self._wrap(key, super().__getitem__(key)) if key in self else default


def _resolve(schema: dict) -> dict:
    while True:
        if "$ref" in schema:
            schema = RESPONSES["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in schema:
            schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
        else:
            return schema


def undocumented_reads(schema_name: str, reads: set) -> list[str]:
    """Paths github3.py reads with [] that the schema does not mark required."""
    allowed = set(ENDPOINTS["github3_reads_beyond_required"].get(schema_name, []))
    missing = []
    for how, path in reads:
        if how != "[]" or (len(path) == 1 and path[0] in allowed):
            continue
        node = _resolve(RESPONSES["$defs"][schema_name])
        for step in path[:-1]:  # how each step above was read is a read of its own
            node = _resolve(node["items"] if step == "[]" else node["properties"][step])
        if path[-1] not in node.get("required", []):
            missing.append(".".join(path))
    return sorted(set(missing))


GITHUB3_CLASSES = {
    "GET /repos/{owner}/{repo}": (gh_repo.Repository, "full-repository"),
    "POST /repos/{owner}/{repo}/forks": (gh_repo.Repository, "full-repository"),
    "GET /repos/{owner}/{repo}/git/ref/{ref}": (gh_git.Reference, "git-ref"),
    "POST /repos/{owner}/{repo}/git/refs": (gh_git.Reference, "git-ref"),
    "PATCH /repos/{owner}/{repo}/git/refs/{ref}": (gh_git.Reference, "git-ref"),
    "GET /repos/{owner}/{repo}/git/commits/{commit_sha}": (gh_git.Commit, "git-commit"),
    "POST /repos/{owner}/{repo}/git/commits": (gh_git.Commit, "git-commit"),
    "POST /repos/{owner}/{repo}/git/trees": (gh_git.Tree, "git-tree"),
    "GET /repos/{owner}/{repo}/git/trees/{tree_sha}": (gh_git.Tree, "git-tree"),
    "POST /repos/{owner}/{repo}/pulls": (gh_pulls.ShortPullRequest, "pull-request"),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}": (gh_pulls.PullRequest, "pull-request"),
    "PATCH /repos/{owner}/{repo}/pulls/{pull_number}": (gh_pulls.ShortPullRequest, "pull-request"),
}


# --- the story --------------------------------------------------------------------------


class _Hooks(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        self.received.append((self.headers, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """Run everything submit does (and a maintainer's merge) against one stand-in."""
    tmp = tmp_path_factory.mktemp("contract")
    world = make_world(tmp)
    standin = world.standin
    received: list = []
    hooks = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Hooks,), {"received": received}))
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    standin.add_webhook(
        world.upstream, f"http://127.0.0.1:{hooks.server_address[1]}/", "hook-secret"
    )
    mp = pytest.MonkeyPatch()
    mp.chdir(world.work)
    try:
        mp.setenv("GITHUB_TOKEN", AUTHOR_TOKEN)
        url = ["--github-url", standin.url]
        assert main(["new", "leaf-spotter"]) == 0
        fill_module(world.work, "leaf-spotter")
        assert main(["submit", "leaf-spotter", *url]) == 0  # fork (async), branch, PR
        readme = world.work / "catalog" / "leaf-spotter" / "README.md"
        readme.write_text("# Leaf disease spotter\n\nEdited.\n")
        assert main(["submit", "leaf-spotter", *url]) == 0  # PATCH ref, PATCH pull
        assert main(["submit", *url]) == 0  # finds changed modules through contents + trees
        assert main(["submit", "leaf-spotter", *url, "--repo", "deepmarket/missing"]) == 1  # 404

        gh = github3.GitHubEnterprise(standin.url, token=AUTHOR_TOKEN)
        fork = gh.repository("alice", "catalog")
        head = fork.ref("heads/add-leaf-spotter")
        with pytest.raises(gx.UnprocessableEntity, match="Reference already exists"):
            fork.create_ref("refs/heads/add-leaf-spotter", head.object.sha)
        upstream = gh.repository("deepmarket", "catalog")
        with pytest.raises(gx.UnprocessableEntity) as exists:
            upstream.create_pull("again", "main", "alice:add-leaf-spotter", "body")
        assert "A pull request already exists for alice:add-leaf-spotter." in str(
            exists.value.errors
        )
        with pytest.raises(gx.NotFoundError):
            fork.ref("heads/no-such-branch")
        with pytest.raises(gx.GitHubError) as bad:
            github3.GitHubEnterprise(standin.url, token="ghp_wrong").repository(
                "deepmarket", "catalog"
            )
        assert bad.value.code == 401

        maintainer = github3.GitHubEnterprise(standin.url, token=MAINTAINER_TOKEN)
        pr = maintainer.pull_request("deepmarket", "catalog", 1)
        assert not pr.is_merged()
        assert pr.merge(commit_message="Add leaf-spotter")
        assert pr.refresh().is_merged()
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        yield standin, received
    finally:
        mp.undo()
        hooks.shutdown()
        hooks.server_close()
        standin.stop()


def test_every_answer_is_documented_and_validates(story):
    standin, _ = story
    assert not standin.crashes, standin.crashes[0]
    assert standin.exchanges
    for exchange in standin.exchanges:
        key = endpoint_of(exchange.method, exchange.path)
        assert key, f"{exchange.method} {exchange.path} is not an endpoint of the contract"
        check_body(key, exchange.status, exchange.body)


def test_every_endpoint_of_the_contract_was_exercised_with_success(story):
    standin, _ = story
    seen = {(endpoint_of(e.method, e.path), e.status) for e in standin.exchanges}
    for key, endpoint in ENDPOINTS["endpoints"].items():
        success = [s for s in endpoint["responses"] if s.startswith("2")]
        assert any((key, int(s)) in seen for s in success), f"{key} never answered {success}"
    statuses = {status for _, status in seen}
    assert {401, 404, 409, 422} <= statuses  # bad token, missing, async fork, exists


def test_authenticated_answers_carry_the_rate_limit_headers(story):
    standin, _ = story
    names = ENDPOINTS["rate_limit_headers"]["names"]
    for exchange in standin.exchanges:
        if exchange.status != 401:
            assert set(names) <= set(exchange.headers), (exchange.method, exchange.path)
            assert int(exchange.headers["X-RateLimit-Remaining"]) >= 0


def test_github3_reads_only_fields_github_documents_as_required(story):
    standin, _ = story
    session = github3.GitHubEnterprise(standin.url)
    checked = set()
    problems = {}
    for exchange in standin.exchanges:
        key = endpoint_of(exchange.method, exchange.path)
        if not (200 <= exchange.status < 300):
            continue
        bodies: list[tuple[type, str, Any]] = []
        if key in GITHUB3_CLASSES:
            cls, schema = GITHUB3_CLASSES[key]
            bodies.append((cls, schema, exchange.body))
        elif key == "GET /repos/{owner}/{repo}/pulls":
            bodies += [(gh_pulls.ShortPullRequest, "pull-request-simple", b) for b in exchange.body]
        elif key == "GET /repos/{owner}/{repo}/contents/{path}":
            if isinstance(exchange.body, list):
                bodies += [(gh_contents.Contents, "content-directory", b) for b in exchange.body]
            else:
                bodies.append((gh_contents.Contents, "content-file", exchange.body))
        for cls, schema, body in bodies:
            reads: set = set()
            cls(Recording(body, (), reads), session)
            if schema == "content-directory":
                reads = {(how, ("[]", *path)) for how, path in reads}
            missing = undocumented_reads(schema, reads)
            if missing:
                problems[key] = missing
            checked.add(key)
    assert not problems, json.dumps(problems, indent=1)
    assert len(checked) >= 12


def test_the_merge_sent_a_documented_signed_push_webhook(story):
    standin, received = story
    assert len(received) == 1
    headers, body = received[0]
    for name in ENDPOINTS["webhook"]["headers"]:
        assert headers.get(name), name
    assert headers["X-GitHub-Event"] == "push"
    expected = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
    jsonschema.Draft202012Validator(PUSH).validate(json.loads(body))
    assert standin.deliveries[0].status == 204


def test_the_checks_fail_on_a_drifted_answer(story):
    """The contract catches drift: a missing required field, an undocumented status, and a
    github3.py read of a field GitHub does not promise."""
    standin, _ = story
    repo_answer = next(
        e for e in standin.exchanges if e.method == "GET" and e.path == "/repos/deepmarket/catalog"
    )
    key = "GET /repos/{owner}/{repo}"
    drifted = {k: v for k, v in repo_answer.body.items() if k != "default_branch"}
    with pytest.raises(pytest.fail.Exception, match="default_branch"):
        check_body(key, 200, drifted)
    with pytest.raises(AssertionError, match="does not document"):
        check_body(key, 418, {"message": "teapot"})
    assert undocumented_reads("git-ref", {("[]", ("object", "size"))}) == ["object.size"]
