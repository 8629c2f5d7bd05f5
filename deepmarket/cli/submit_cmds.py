"""Subcommand: submit (open or update the pull request that adds a module upstream)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from deepmarket.errors import UsageError, UserError

TOKEN_ENV = "GITHUB_TOKEN"
MAX_FILES = 200  # a module folder is metadata, a README and an icon, not a dataset


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    p = sub.add_parser(
        "submit",
        help="open (or update) the pull request that adds your module to the catalog",
        description="Validate the module, then open the pull request that adds it upstream: "
        "fork when you cannot push there, put one commit with catalog/<id>/ and the "
        "modules.yml change on branch add-<id> (update-<id> for a module already listed) "
        "and open the pull request; run it again after an edit to update the same branch "
        f"and pull request. The token comes from ${TOKEN_ENV} or --token-file and is "
        "never printed or stored.",
    )
    p.add_argument(
        "ids",
        nargs="*",
        metavar="ID",
        help="module ids (default: every module whose folder differs from upstream's)",
    )
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help="upstream repository (default: from the git remote 'upstream', else 'origin')",
    )
    p.add_argument(
        "--github-url",
        metavar="URL",
        help="GitHub Enterprise web root, e.g. https://ghe.example.org (default: github.com, "
        "or the remote's host)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=f"read the token from this file instead of ${TOKEN_ENV}",
    )
    p.add_argument("--base", help="upstream branch to target (default: its default branch)")
    p.add_argument(
        "--fork-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for GitHub to finish a new fork (default: 300)",
    )
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "review",
        help="the pull request's checks: validate, annotate, summarise, preview, comment",
        description="What the catalog's validate workflow runs on a pull request: validate the "
        "catalog strictly, print the most useful problems first as GitHub annotations (at most "
        "--annotations errors, GitHub's per-step limit), append every problem to the job "
        "summary, build the marketplace preview and write the pull request comment. Exit 1 "
        "when the catalog has errors.",
    )
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.add_argument(
        "--base",
        metavar="REV",
        help="the pull request's base (e.g. origin/main or a sha): modules changed since its "
        "merge base are ranked first (default: none)",
    )
    p.add_argument(
        "--format",
        choices=("text", "github"),
        default="text",
        help="problems as text lines or GitHub workflow annotations",
    )
    p.add_argument(
        "--annotations",
        type=int,
        default=10,
        metavar="N",
        help="most errors to annotate (default: 10)",
    )
    p.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="append the Markdown job summary here ($GITHUB_STEP_SUMMARY)",
    )
    p.add_argument(
        "--comment",
        type=Path,
        metavar="FILE",
        help="write the pull request comment (Markdown) here",
    )
    p.add_argument(
        "--preview", type=Path, metavar="DIR", help="build the marketplace preview into DIR"
    )
    p.add_argument("--run-url", help="link to the workflow run, for the comment")
    p.set_defaults(func=cmd_review)


# --- inputs ----------------------------------------------------------------------------


def read_token(env: dict[str, str], token_file: Path | None, root: Path) -> str:
    """The token, from --token-file or $GITHUB_TOKEN; refuses a file git would commit."""
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"--token-file {token_file} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"--token-file {token_file} cannot be read ({exc.__class__.__name__})"
            ) from None
        if _committable(token_file, root):
            raise UsageError(
                f"--token-file {token_file} is inside the repository and not ignored by git: "
                "move it out (e.g. to ~/.config/deepmarket/token) so it is never committed"
            )
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) != 1 or any(c.isspace() for c in lines[0]):
            raise UsageError(f"--token-file {token_file} must hold the token alone on one line")
        return lines[0]
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(
            f"no GitHub token: set {TOKEN_ENV} (e.g. export {TOKEN_ENV}=$(gh auth token)) or "
            "pass --token-file PATH; it needs the 'repo' scope (classic) or Contents and Pull "
            "requests read/write (fine-grained)"
        )
    return token


def _git_repo(root: Path) -> Any:
    import pygit2

    try:
        path = pygit2.discover_repository(str(root.resolve()))
    except pygit2.GitError:
        return None
    return pygit2.Repository(path) if path else None


def _committable(path: Path, root: Path) -> bool:
    repo = _git_repo(root)
    if repo is None or repo.workdir is None:
        return False
    workdir = Path(repo.workdir).resolve()
    try:
        rel = path.resolve().relative_to(workdir)
    except ValueError:
        return False
    return not repo.path_is_ignored(rel.as_posix())


def find_upstream(args: argparse.Namespace) -> Any:
    from deepmarket.contrib import plan

    web = args.github_url.rstrip("/") if args.github_url else None
    if web and not web.startswith(("https://", "http://")):
        raise UsageError(f"--github-url {args.github_url!r} must start with https://")
    if args.repo:
        return plan.parse_repo(args.repo, web or f"https://{plan.GITHUB_COM}")
    repo = _git_repo(args.root)
    remotes = {r.name: r.url for r in repo.remotes if r.url} if repo is not None else {}
    found = plan.choose_remote(remotes)
    if found is None:
        raise UsageError(
            "cannot tell the upstream repository: no git remote 'upstream' or 'origin' names "
            "a GitHub repository here; pass --repo OWNER/NAME"
        )
    if web:
        found = plan.Upstream(found.owner, found.name, web)
    return found


def module_files(module_dir: Path, root: Path) -> dict[str, bytes]:
    """Every file of the module folder that git would commit (no dotfiles, nothing git
    ignores), by '/'-path relative to the folder."""
    repo = _git_repo(root)
    workdir = Path(repo.workdir).resolve() if repo is not None and repo.workdir else None
    files: dict[str, bytes] = {}
    for path in sorted(module_dir.rglob("*")):
        rel = path.relative_to(module_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            raise UserError(f"{path} is a symlink; a module folder holds plain files only")
        if not path.is_file():
            continue
        if workdir is not None:
            try:
                if repo.path_is_ignored(path.resolve().relative_to(workdir).as_posix()):
                    continue
            except ValueError:
                pass
        files[rel.as_posix()] = path.read_bytes()
        if len(files) > MAX_FILES:
            raise UserError(f"{module_dir} holds more than {MAX_FILES} files; keep data elsewhere")
    return files


def check_module(root: Path, module_id: str, catalog: Any, problems: list) -> Any:
    """The module, once it validates strictly (warnings such as the scaffold's placeholders
    count, as they do in the pull request's CI); else print the validator's lines and
    refuse."""
    from deepmarket.catalog.loader import INDEX_FILE, strict

    prefix = f"catalog/{module_id}/"
    mine = strict([p for p in problems if p.file.startswith(prefix) or p.file == INDEX_FILE])
    module = next((m for m in catalog if m.id == module_id), None)
    if module is None and not mine:
        raise UserError(
            f"module {module_id!r} is not in {root / 'modules.yml'} and catalog/; create it "
            f"with `deepmarket new {module_id}`"
        )
    if mine:
        for problem in sorted(mine):
            print(str(problem), file=sys.stderr)
        n = len(mine)
        raise UserError(
            f"{module_id}: {n} problem{'s' if n != 1 else ''} (above); fix "
            f"{'it' if n == 1 else 'them'} and run `deepmarket submit {module_id}` again"
        )
    return module


def cmd_submit(args: argparse.Namespace) -> int:
    from deepmarket.catalog.loader import scan_catalog
    from deepmarket.catalog.scaffold import check_new_id
    from deepmarket.contrib import github, plan

    def say(message: str) -> None:
        print(f"submit: {message}", file=sys.stderr, flush=True)

    for module_id in args.ids:
        check_new_id(module_id)
    root = args.root
    catalog, problems = scan_catalog(root)
    modules = {mid: check_module(root, mid, catalog, problems) for mid in args.ids}
    upstream = find_upstream(args)
    token = read_token(dict(os.environ), args.token_file, root)
    submitter = github.Submitter(
        github.login(upstream, token), upstream, progress=say, fork_timeout=args.fork_timeout
    )
    del token  # only github3.py's session holds it from here on
    if not modules:
        base = args.base or submitter.repo.default_branch
        sha, _ = submitter.base_commit(base)
        changed = []
        for module in catalog:
            upstream_dir, _ = submitter.upstream_module(module.id, sha)
            if upstream_dir != plan.git_tree_sha(module_files(module.dir, root)):
                changed.append(module.id)
        if not changed:
            say(f"nothing to submit: every module here matches {upstream.full_name}@{base}")
            return 0
        say(f"modules that differ from {upstream.full_name}@{base}: {', '.join(changed)}")
        modules = {mid: check_module(root, mid, catalog, problems) for mid in changed}

    for module_id, module in modules.items():
        local = github.LocalModule(
            id=module_id,
            data=module.data,
            deploy=module.deploy,
            files=module_files(module.dir, root),
            checked=f"`deepmarket validate` found no problem in `catalog/{module_id}/` "
            "and `modules.yml`",
        )
        say(f"submitting {module_id} to {upstream.full_name}")
        outcome = submitter.submit(local, args.base)
        if outcome is None:
            say(f"{module_id}: {upstream.full_name} already has it exactly as it is here")
            continue
        verb = {
            "opened": "opened",
            "updated": "updated",
            "unchanged": "is up to date:",
        }[outcome.pull_request]
        print(f"{module_id}: pull request #{outcome.number} {verb} {outcome.url}")
    return 0


# --- review ------------------------------------------------------------------------------


def changed_paths(root: Path, base: str) -> list[str]:
    """Files changed between the merge base of `base` and HEAD (what the pull request adds)."""
    import pygit2

    repo = _git_repo(root)
    if repo is None:
        raise UsageError(f"--base needs a git checkout; {root} is not inside one")
    try:
        base_commit = repo.revparse_single(base).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        raise UsageError(
            f"--base {base!r} is not a commit here; fetch it first (actions/checkout with "
            "fetch-depth: 0)"
        ) from None
    head = repo.head.peel(pygit2.Commit)
    merge_base = repo.merge_base(base_commit.id, head.id) or base_commit.id
    diff = repo.diff(repo[merge_base].peel(pygit2.Commit).tree, head.tree)
    paths = set()
    for delta in diff.deltas:
        paths.update({delta.old_file.path, delta.new_file.path})
    return sorted(paths)


def build_preview(root: Path, out: Path, changed: list[str]) -> Any:
    from deepmarket.contrib.review import Preview
    from deepmarket.site.build import build_site

    config = root / "mkdocs.yml"
    if not config.is_file():
        return Preview(False, f"not built: {config} does not exist", {})
    try:
        site = build_site(config, site_dir=out.resolve(), catalog=root.resolve())
    except UserError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "failed"
        return Preview(False, f"the marketplace build failed: {first}", {})
    pages = {m: (site / "modules" / m / "index.html").is_file() for m in changed}
    where = ", ".join(f"`modules/{m}/index.html`" for m, ok in pages.items() if ok)
    return Preview(
        True,
        "built; download the workflow's `preview` artifact and open " + (where or "`index.html`"),
        pages,
    )


def cmd_review(args: argparse.Namespace) -> int:
    from deepmarket.catalog.loader import scan_catalog, strict
    from deepmarket.contrib import review

    root = args.root
    # A push that creates a branch has no before (40 zeros): nothing to compare with.
    base = args.base if args.base and set(args.base) != {"0"} else None
    paths = changed_paths(root, base) if base else []
    changed = review.changed_modules(paths)
    _, problems = scan_catalog(root)
    ranked = review.rank(strict(problems), changed)
    if args.format == "github":
        for line in review.annotations(ranked, args.annotations).lines:
            print(line)
    else:
        for problem in ranked:
            print(str(problem))
    errors = [p for p in ranked if p.is_error]
    if args.preview is not None and not errors:
        preview = build_preview(root, args.preview, changed)
    elif args.preview is not None:
        preview = review.Preview(False, "not built: fix the errors above first", {})
    else:
        preview = review.Preview(False, "not requested", {})
    if args.summary is not None:
        with args.summary.open("a", encoding="utf-8") as handle:
            handle.write(review.summary(ranked, changed, preview) + "\n")
    if args.comment is not None:
        args.comment.parent.mkdir(parents=True, exist_ok=True)
        args.comment.write_text(
            review.comment(ranked, changed, preview, run_url=args.run_url), encoding="utf-8"
        )
    n = len(errors)
    print(
        f"review: {n} error{'s' if n != 1 else ''}; changed modules: {', '.join(changed) or 'none'}"
        f"; preview: {preview.message}",
        file=sys.stderr,
    )
    return 1 if errors else 0
