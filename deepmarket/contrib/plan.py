"""What `deepmarket submit` sends, decided without I/O: where upstream is, the branch, the
commit's files and the pull request's title and body.

Everything here takes plain data (texts, bytes, mappings) and returns plain data, so each
decision is tested without GitHub; `deepmarket.contrib.github` does the talking.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from deepmarket.errors import UsageError

GITHUB_COM = "github.com"
FILE_MODE = "100644"
MARKER = "<!-- deepmarket-submit -->"  # lets reviewers' tools find submit's pull requests

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_REPO_RE = re.compile(rf"^({_OWNER})/({_NAME}?)$")
_SCP_RE = re.compile(rf"^(?:[^@/]+@)?([^:/]+):/?({_OWNER})/({_NAME})$")


@dataclass(frozen=True)
class Upstream:
    """The repository a module is submitted to, and the web root of its GitHub."""

    owner: str
    name: str
    web_url: str = f"https://{GITHUB_COM}"  # GitHub Enterprise: https://ghe.example.org

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def enterprise(self) -> bool:
        return urlsplit(self.web_url).hostname != GITHUB_COM


def _strip_git(name: str) -> str:
    return name[:-4] if name.endswith(".git") else name


def parse_repo(text: str, web_url: str = f"https://{GITHUB_COM}") -> Upstream:
    """`owner/name` as given to --repo."""
    match = _REPO_RE.match(_strip_git(text.strip()))
    if not match:
        raise UsageError(f"--repo {text!r} is not owner/name (e.g. --repo deepmarket/deepmarket)")
    return Upstream(match.group(1), match.group(2), web_url.rstrip("/"))


def parse_remote(url: str) -> Upstream | None:
    """The upstream a git remote URL points at: https, ssh:// and scp-like (git@host:o/r)
    forms; None when the URL names no owner/name on a host (a local path, say).

    A host other than github.com is taken as GitHub Enterprise at https://<host> (or at the
    remote's own http(s) scheme and port), which is where its API lives too.
    """
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
            return None
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) != 2:
            return None
        owner, name = segments[0], _strip_git(segments[1])
        host = parts.hostname
        if parts.scheme in ("http", "https"):
            web = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"
        else:
            web = f"https://{host}"
    else:
        match = _SCP_RE.match(url)
        if not match:
            return None
        host, owner, name = match.group(1), match.group(2), _strip_git(match.group(3))
        web = f"https://{host}"
    if not re.fullmatch(_OWNER, owner) or not re.fullmatch(_NAME, name):
        return None
    return Upstream(owner, name, web)


def choose_remote(remotes: Mapping[str, str]) -> Upstream | None:
    """`upstream` first (the fork convention: origin is your fork), then `origin`."""
    for name in ("upstream", "origin"):
        if name in remotes:
            found = parse_remote(remotes[name])
            if found:
                return found
    return None


def branch_name(module_id: str, listed_upstream: bool) -> str:
    """`add-<id>` for a module upstream does not list yet, `update-<id>` for one it does."""
    return f"{'update' if listed_upstream else 'add'}-{module_id}"


# --- the commit ------------------------------------------------------------------------


def git_blob_sha(data: bytes) -> str:
    """The object id git gives these bytes as a blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def git_tree_sha(files: Mapping[str, bytes]) -> str:
    """The object id git gives a folder holding `files` (relative '/'-paths -> bytes), so
    a local module folder can be compared with upstream's without sending it."""
    subdirs: dict[str, dict[str, bytes]] = {}
    entries: list[tuple[str, bytes, bytes]] = []  # (sort key, mode + name, raw sha)
    for path, data in files.items():
        head, _, rest = path.partition("/")
        if rest:
            subdirs.setdefault(head, {})[rest] = data
        else:
            entries.append(
                (head, f"{FILE_MODE} {head}".encode(), bytes.fromhex(git_blob_sha(data)))
            )
    for name, sub in subdirs.items():
        # git sorts a tree as if directory names ended with '/'.
        entries.append((name + "/", f"40000 {name}".encode(), bytes.fromhex(git_tree_sha(sub))))
    body = b"".join(head + b"\0" + sha for _, head, sha in sorted(entries))
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def tree_changes(
    module_id: str,
    local: Mapping[str, str],
    upstream: Sequence[str],
    index_sha: str,
) -> list[dict[str, Any]]:
    """Entries for GitHub's create-tree (over upstream's tree as base_tree): each local
    file of the module folder (relative path -> blob sha), a deletion (sha None) for each
    file upstream has in that folder that the author removed, and the new modules.yml."""
    prefix = f"catalog/{module_id}/"
    entries: list[dict[str, Any]] = [
        {"path": prefix + rel, "mode": FILE_MODE, "type": "blob", "sha": sha}
        for rel, sha in sorted(local.items())
    ]
    entries += [
        {"path": prefix + rel, "mode": FILE_MODE, "type": "blob", "sha": None}
        for rel in sorted(set(upstream) - set(local))
    ]
    entries.append({"path": "modules.yml", "mode": FILE_MODE, "type": "blob", "sha": index_sha})
    return entries


def index_with_entry(upstream_text: str, module_id: str, deploy: bool) -> str:
    """Upstream's modules.yml with this module listed once, with the author's `deploy`;
    everything else (other entries, comments, order) exactly as upstream has it."""
    from ruamel.yaml.comments import CommentedMap

    from deepmarket.catalog.scaffold import _round_trip, append_to_index

    yaml = _round_trip()
    data = yaml.load(upstream_text) if upstream_text.strip() else None
    modules = data.get("modules") if isinstance(data, CommentedMap) else None
    for entry in modules or []:
        if isinstance(entry, dict) and entry.get("id") == module_id:
            if bool(entry.get("deploy", False)) == deploy:
                return upstream_text
            entry["deploy"] = deploy
            out = io.StringIO()
            yaml.dump(data, out)
            return out.getvalue()
    return append_to_index(upstream_text, module_id, deploy=deploy)


# --- the pull request ------------------------------------------------------------------


def pr_title(module_id: str, title: str, listed_upstream: bool) -> str:
    return f"{'Update' if listed_upstream else 'Add'} module {module_id}: {title}"


def commit_message(module_id: str, title: str, listed_upstream: bool) -> str:
    verb = "Update" if listed_upstream else "Add"
    return (
        f"{verb} module {module_id}\n\n{title}\n\nSubmitted with `deepmarket submit {module_id}`."
    )


def _md(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _resources(block: Mapping[str, Any] | None) -> str:
    if not block:
        return "—"
    parts = []
    if "cpu" in block:
        parts.append(f"{block['cpu']} CPU")
    if "memory_MB" in block:
        parts.append(f"{block['memory_MB']} MB memory")
    gpu = block.get("gpu", 0)
    parts.append(f"{gpu} GPU" if gpu else "no GPU")
    if block.get("gpu_memory_MB"):
        parts.append(f"{block['gpu_memory_MB']} MB GPU memory")
    if block.get("storage_MB"):
        parts.append(f"{block['storage_MB']} MB storage")
    return ", ".join(parts)


def pr_body(
    data: Mapping[str, Any],
    *,
    deploy: bool,
    listed_upstream: bool,
    checked: str,
    files: Sequence[str],
) -> str:
    """The pull request's description: what the module is, what it needs, and the result
    of the validation that ran before submitting (`checked`, one line)."""
    runtime = data.get("runtime") or {}
    resources = data.get("resources") or {}
    links = data.get("links") or {}
    rows = [
        ("Module", f"`{data.get('id')}`"),
        ("Title", data.get("title", "")),
        ("Summary", data.get("summary", "")),
        ("Categories", ", ".join(data.get("categories", [])) or "—"),
        ("Tasks", ", ".join(data.get("tasks", [])) or "—"),
        ("Libraries", ", ".join(data.get("libraries", [])) or "—"),
        ("Image", f"`{runtime.get('image', '')}`"),
        ("DEEPaaS model", f"`{runtime.get('model', '')}`"),
        ("Inference resources", _resources(resources.get("inference"))),
    ]
    if runtime.get("train") or resources.get("training"):
        rows.append(("Training resources", _resources(resources.get("training"))))
    rows += [
        ("Licence", data.get("license", "")),
        ("Source code", links.get("source_code", "—")),
        (
            "Deploy on merge",
            "yes: the operator keeps it running for inference" if deploy else "no",
        ),
    ]
    table = "\n".join(f"| {name} | {_md(value)} |" for name, value in rows)
    listing = "\n".join(f"- `{path}`" for path in files)
    action = "updates" if listed_upstream else "adds"
    return (
        f"{MARKER}\n"
        f"This pull request {action} the module **{_md(data.get('title', ''))}** "
        f"(`{data.get('id')}`) in the catalog.\n\n"
        f"| | |\n| --- | --- |\n{table}\n\n"
        f"**Validation before submitting:** {checked}\n\n"
        f"Files:\n{listing}\n\n"
        "The catalog's checks validate the module again on this pull request, annotate "
        "any problem on the diff and comment a preview of its marketplace page.\n"
    )
