"""Subcommands for scientists: train, train follow, promote.

`deepmarket train MODULE --data URL --output URL` stores the WebDAV credentials in a Secret
(from an rclone remote, `--data myremote:path`, or from $DEEPMARKET_WEBDAV_USER /
$DEEPMARKET_WEBDAV_PASSWORD) and creates the TrainingRun. `train follow NAME` draws its
progress until it ends (exit 1 with the reason when it failed). `promote NAME` serves a
Succeeded run's model with a DeepModule.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from deepmarket import API_GROUP, API_VERSION
from deepmarket.errors import UsageError, UserError

API = f"{API_GROUP}/{API_VERSION}"
USER_ENV = "DEEPMARKET_WEBDAV_USER"
PASSWORD_ENV = "DEEPMARKET_WEBDAV_PASSWORD"
REMOTE = re.compile(r"^([A-Za-z0-9_][-A-Za-z0-9_. ]*):(.*)$")
NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def parse_arg(text: str) -> tuple[str, Any]:
    """`k=v` with v read as JSON when it is a number, boolean, list or object."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise UsageError(f"--arg {text!r}: write NAME=VALUE, NAME an identifier (e.g. epochs=10)")
    try:
        parsed = json.loads(value)
        if isinstance(parsed, (int, float, bool, list, dict)):
            return key, parsed
    except ValueError:
        pass
    return key, value


def rclone_remotes() -> dict[str, dict[str, Any]]:
    """The user's rclone remotes (`rclone config dump`: passwords stay obscured)."""
    if not shutil.which("rclone"):
        raise UsageError("rclone is not installed: give an https:// URL instead of remote:path")
    done = subprocess.run(["rclone", "config", "dump"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UserError(f"rclone config dump failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout or "{}")


def resolve_location(text: str, remotes: dict[str, dict[str, Any]] | None) -> tuple[str, dict]:
    """An https URL, or `remote:path` of a WebDAV rclone remote → (URL, Secret data)."""
    if text.startswith(("http://", "https://")):
        return text.rstrip("/"), {}
    m = REMOTE.match(text)
    if not m:
        raise UsageError(f"{text!r}: give a WebDAV URL (https://…) or an rclone remote:path")
    remotes = remotes if remotes is not None else rclone_remotes()
    name, path = m.group(1), m.group(2).strip("/")
    remote = remotes.get(name)
    if remote is None:
        known = ", ".join(sorted(remotes)) or "none"
        raise UsageError(f"rclone remote {name!r} is not configured (yours: {known}); "
                         "add it with `rclone config`")  # fmt: skip
    if remote.get("type") != "webdav":
        raise UsageError(f"rclone remote {name!r} is of type {remote.get('type')!r}; "
                         "TrainingRuns read WebDAV (Nextcloud) remotes")  # fmt: skip
    url = str(remote.get("url", "")).rstrip("/") + (f"/{path}" if path else "")
    data = {}
    if remote.get("user"):
        data["RCLONE_WEBDAV_USER"] = remote["user"]
    if remote.get("pass"):
        data["RCLONE_WEBDAV_PASS"] = remote["pass"]  # already obscured by rclone
    if remote.get("bearer_token"):
        data["RCLONE_WEBDAV_BEARER_TOKEN"] = remote["bearer_token"]
    return url, data


def obscure(password: str) -> str:
    if not shutil.which("rclone"):
        return ""
    done = subprocess.run(
        ["rclone", "obscure", "-"], input=password, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def env_credentials(env: dict[str, str]) -> dict[str, str]:
    user, password = env.get(USER_ENV, ""), env.get(PASSWORD_ENV, "")
    if not user and not password:
        return {}
    if not (user and password):
        raise UsageError(f"set both ${USER_ENV} and ${PASSWORD_ENV} (a Nextcloud app password)")
    hidden = obscure(password)
    if hidden:
        return {"RCLONE_WEBDAV_USER": user, "RCLONE_WEBDAV_PASS": hidden}
    return {"RCLONE_WEBDAV_USER": user, "password": password}  # the pod obscures it


def trainingrun_manifest(
    name: str,
    module: str,
    *,
    data: str,
    output: str,
    secret: str | None,
    args: dict[str, Any],
    gpus: int | None,
    image: str | None = None,
    deadline: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"module": module}
    if image:
        spec["image"] = image
    if args:
        spec["args"] = args
    if gpus is not None:
        spec["resources"] = {"gpu": gpus}
    folder_in: dict[str, Any] = {"url": data}
    folder_out: dict[str, Any] = {"url": output}
    if secret:
        folder_in["secretRef"] = folder_out["secretRef"] = secret
    spec["data"] = {"input": folder_in, "output": folder_out}
    if deadline:
        spec["runPolicy"] = {"activeDeadlineSeconds": deadline}
    return {"apiVersion": API, "kind": "TrainingRun", "metadata": {"name": name}, "spec": spec}


def _kube(args: argparse.Namespace) -> Any:
    from deepmarket.controller.kube import Kube, make_api_client

    try:
        return Kube(make_api_client(args.kubeconfig, pool_size=2))
    except Exception as exc:  # no kubeconfig, unreadable file: one line
        raise UserError(f"cannot load the Kubernetes configuration: {exc}") from None


def _namespace(args: argparse.Namespace) -> str:
    return args.namespace or "default"


def cmd_train(args: argparse.Namespace) -> int:
    if args.module == "follow":
        if not args.name:
            raise UsageError("deepmarket train follow NAME: give the TrainingRun's name")
        return follow(args)
    if args.name:
        raise UsageError(f"unexpected argument {args.name!r}")
    if not args.data or not args.output:
        raise UsageError("deepmarket train MODULE needs --data URL and --output URL")
    from deepmarket.controller.kube import ApiError, object_path

    name = args.run_name or f"{args.module}-{time.strftime('%Y%m%d-%H%M%S')}".lower()
    if not NAME.match(name) or len(name) > 52:
        raise UsageError(f"--name {name!r}: a DNS label of at most 52 characters (a-z, 0-9, -)")
    remotes = None
    if not args.data.startswith("http") or not args.output.startswith("http"):
        remotes = rclone_remotes()
    data_url, data_secret = resolve_location(args.data, remotes)
    out_url, out_secret = resolve_location(args.output, remotes)
    if data_secret and out_secret and data_secret != out_secret:
        raise UsageError("--data and --output use different credentials; use one remote")
    secret_data = data_secret or out_secret or env_credentials(dict(os.environ))
    train_args = dict(parse_arg(a) for a in args.arg)
    ns = _namespace(args)
    secret_name = f"{name}-webdav" if secret_data else None
    manifest = trainingrun_manifest(
        name, args.module, data=data_url, output=out_url, secret=secret_name,
        args=train_args, gpus=args.gpus, image=args.image, deadline=args.deadline,
    )  # fmt: skip
    if args.dry_run:
        print(json.dumps(manifest, indent=2))
        return 0
    kube = _kube(args)
    try:
        if secret_name:
            secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": secret_name, "namespace": ns,
                                   "labels": {"app.kubernetes.io/part-of": "deepmarket"}},
                      "stringData": secret_data}  # fmt: skip
            kube.request("POST", object_path("v1", "Secret", ns), body=secret)
        manifest["metadata"]["namespace"] = ns
        run = kube.request("POST", object_path(API, "TrainingRun", ns), body=manifest)
        if secret_name:  # deleting the run deletes its Secret
            owner = {"apiVersion": API, "kind": "TrainingRun", "name": name,
                     "uid": run["metadata"]["uid"]}  # fmt: skip
            kube.request(
                "PATCH", object_path("v1", "Secret", ns, secret_name),
                body={"metadata": {"ownerReferences": [owner]}},
                content_type="application/merge-patch+json",
            )  # fmt: skip
    except ApiError as err:
        if err.status == 409:
            raise UserError(
                f"{name!r} already exists in namespace {ns}; pick another --name"
            ) from None
        raise UserError(f"creating TrainingRun {ns}/{name}: {err.message}") from None
    print(f"trainingrun {ns}/{name} created; the model will be in {out_url}/{name}/")
    print(f"follow it: deepmarket train follow {name} -n {ns}")
    if args.follow:
        args.name = name
        return follow(args)
    return 0


def _bar(percent: float | None, width: int = 24) -> str:
    if percent is None:
        return ""
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "[" + "#" * filled + "-" * (width - filled) + "] "


def progress_line(run: dict[str, Any]) -> str:
    st = run.get("status") or {}
    phase = st.get("phase") or "Pending"
    progress = st.get("progress") or {}
    line = f"{phase:<9} " + _bar(progress.get("percent"))
    line += progress.get("summary") or ""
    metrics = st.get("metrics") or {}
    if metrics and phase == "Running":
        line += "  " + " ".join(f"{k}={v:.4g}" for k, v in list(metrics.items())[:4])
    reason = st.get("reason")
    if reason and phase in ("Pending", "Running"):
        cond = next((c for c in st.get("conditions") or [] if c.get("reason") == reason), {})
        line += f"  ({reason}{': ' + cond['message'] if cond.get('message') else ''})"
    return line.rstrip()


def follow(args: argparse.Namespace) -> int:
    """Draw the run's progress until it ends; 0 when it Succeeded, 1 with the reason if not."""
    from deepmarket.controller.kube import ApiError

    kube, ns, name = _kube(args), _namespace(args), args.name
    deadline = time.monotonic() + args.timeout if args.timeout else None
    tty = sys.stdout.isatty()
    last = ""
    while True:
        try:
            run = kube.get(API, "TrainingRun", ns, name)
        except ApiError as err:
            raise UserError(f"reading TrainingRun {ns}/{name}: {err.message}") from None
        if run is None:
            raise UserError(f"TrainingRun {ns}/{name} does not exist (kubectl get tr -n {ns})")
        line = progress_line(run)
        if line != last:
            print(("\r\x1b[K" if tty else "") + line, end="" if tty else "\n", flush=True)
            last = line
        st = run.get("status") or {}
        if st.get("phase") in ("Succeeded", "Failed"):
            if tty:
                print()
            return report_end(run)
        if deadline is not None and time.monotonic() > deadline:
            if tty:
                print()
            phase = st.get("phase") or "Pending"
            raise UserError(
                f"{name} is still {phase} after {args.timeout:.0f}s (--timeout); "
                "it goes on in the cluster"
            )
        time.sleep(args.interval)


def report_end(run: dict[str, Any]) -> int:
    st = run.get("status") or {}
    phase = st["phase"]
    cond = next((c for c in st.get("conditions") or [] if c.get("type") == phase), {})
    name = run["metadata"]["name"]
    if phase == "Succeeded":
        out = st.get("output") or {}
        print(f"{name} succeeded: {cond.get('message', '')}")
        for f in out.get("files") or []:
            print(f"  {f['path']}  {f['size']} bytes  sha256:{f['sha256']}")
        if st.get("metrics"):
            print("  metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in st["metrics"].items()))
        print(f"serve it: deepmarket promote {name} -n {run['metadata']['namespace']}")
        return 0
    print(f"{name} failed: {cond.get('reason', 'Failed')}: {cond.get('message', '')}",
          file=sys.stderr)  # fmt: skip
    return 1


def placement_of(job: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
    """Where the run's pod was placed (nodeSelector, tolerations): from its Job, which carries
    the operator's placement too, else from the run's podTemplate (pure)."""
    template = (job or {}).get("spec", {}).get("template") or (run.get("spec") or {}).get(
        "podTemplate"
    )
    pod = (template or {}).get("spec") or {}
    return {k: pod[k] for k in ("nodeSelector", "tolerations") if pod.get(k)}


def deepmodule_for(
    run: dict[str, Any], name: str, placement: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A DeepModule serving a Succeeded run's model (pure); UserError when it is not Succeeded.
    `placement` (nodeSelector, tolerations) serves it where it trained: the image is there."""
    st = run.get("status") or {}
    run_name = run["metadata"]["name"]
    if st.get("phase") != "Succeeded":
        cond = next((c for c in st.get("conditions") or [] if c.get("reason") == st.get("reason")),
                    {})  # fmt: skip
        why = f" ({st.get('reason')}: {cond.get('message', '')})" if st.get("reason") else ""
        raise UserError(
            f"TrainingRun {run_name} is {st.get('phase') or 'Pending'}{why}; only a Succeeded "
            f"run can be promoted (deepmarket train follow {run_name})"
        )
    spec = run.get("spec") or {}
    dm_spec: dict[str, Any] = {"weights": {"trainingRun": run_name}}
    for key in ("module", "image", "model"):
        if spec.get(key):
            dm_spec[key] = spec[key]
    if placement:
        dm_spec["podTemplate"] = {"spec": dict(placement)}
    return {
        "apiVersion": API,
        "kind": "DeepModule",
        "metadata": {"name": name, "namespace": run["metadata"]["namespace"],
                     "labels": {"deepmarket.dev/trained-by": run_name}},
        "spec": dm_spec,
    }  # fmt: skip


def cmd_promote(args: argparse.Namespace) -> int:
    from deepmarket.controller.kube import ApiError, object_path

    kube, ns = _kube(args), _namespace(args)
    try:
        run = kube.get(API, "TrainingRun", ns, args.run)
    except ApiError as err:
        raise UserError(f"reading TrainingRun {ns}/{args.run}: {err.message}") from None
    if run is None:
        raise UserError(f"TrainingRun {ns}/{args.run} does not exist (kubectl get tr -n {ns})")
    name = args.module_name or args.run
    try:
        job = kube.get("batch/v1", "Job", ns, args.run)
    except ApiError:
        job = None  # no right to read Jobs, or gone: the run's own podTemplate says where
    dm = deepmodule_for(run, name, placement_of(job, run))
    if args.dry_run:
        print(json.dumps(dm, indent=2))
        return 0
    try:
        kube.request("POST", object_path(API, "DeepModule", ns), body=dm)
    except ApiError as err:
        if err.status == 409:
            raise UserError(f"DeepModule {ns}/{name} already exists; choose --name") from None
        raise UserError(f"creating DeepModule {ns}/{name}: {err.message}") from None
    print(f"deepmodule {ns}/{name} created, serving {run['status']['output']['url']}")
    print(f"wait for it: kubectl wait --for=condition=Ready dm/{name} -n {ns}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    # fmt: off
    p = sub.add_parser("train", help="train a catalog module on your WebDAV/Nextcloud data",
                       description="deepmarket train MODULE --data URL --output URL [--arg k=v]…"
                       "  |  deepmarket train follow NAME")
    p.add_argument("module", metavar="MODULE|follow", help="catalog module id, or `follow`")
    p.add_argument("name", nargs="?", help="with follow: the TrainingRun to follow")
    p.add_argument("--data", metavar="URL", help="WebDAV folder with the training data "
                   "(https://…/remote.php/dav/files/USER/PATH or an rclone remote:path)")
    p.add_argument("--output", metavar="URL", help="WebDAV folder for the model; it lands in "
                   "<output>/<run name>/")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="training argument (repeatable); $(DATA_DIR) is the data folder")
    p.add_argument("--gpus", type=int, help="nvidia.com/gpu (default: the catalog's)")
    p.add_argument("--image", help="container image instead of the catalog's")
    p.add_argument("--name", dest="run_name", help="TrainingRun name (default MODULE-DATE)")
    p.add_argument("--deadline", type=int, metavar="SECONDS",
                   help="runPolicy.activeDeadlineSeconds")
    p.add_argument("--follow", "-f", action="store_true", help="follow the run after creating it")
    p.add_argument("--dry-run", action="store_true", help="print the TrainingRun, create nothing")
    p.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=0, metavar="SECONDS",
                   help="with follow: give up waiting after this long (0: never)")
    for q in (p,):
        q.add_argument("--namespace", "-n", help="namespace (default: default)")
        q.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    p.set_defaults(func=cmd_train)
    q = sub.add_parser("promote", help="serve a Succeeded TrainingRun's model with a DeepModule")
    q.add_argument("run", metavar="TRAININGRUN")
    q.add_argument("--name", dest="module_name", help="DeepModule name (default: the run's)")
    q.add_argument("--namespace", "-n", help="namespace (default: default)")
    q.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    q.add_argument("--dry-run", action="store_true", help="print the DeepModule, create nothing")
    q.set_defaults(func=cmd_promote)
    # fmt: on


def build_parser_args_for_test(command: str) -> argparse.Namespace:
    """Parse a `deepmarket train …` command line as the shell would (tests of the site's
    command use it)."""
    import shlex

    from deepmarket.cli import build_parser

    return build_parser().parse_args(shlex.split(command.replace("\\\n", " "))[1:])
