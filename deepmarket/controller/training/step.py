"""The program a TrainingRun's pod runs: data in (rclone) → `deepaas-cli train` → model out.

It runs inside the *module's* image, which has Python (DEEPaaS needs it) but not deepmarket:
an init container copies this one file and an `rclone` binary into a shared volume, and the
training container runs `python3 /deepmarket/step.py`. So this file imports the standard
library only (a test runs it with `python -I -S`).

Configuration comes from the environment the operator's Job sets (see `builders.py`):

- `DEEPMARKET_RUN` the run name; `DEEPMARKET_INPUT_URL`, `DEEPMARKET_OUTPUT_URL` WebDAV folders;
- `RCLONE_CONFIG_IN_*` / `RCLONE_CONFIG_OUT_*` the two rclone remotes (type, url, vendor, user,
  pass obscured as rclone wants it). A Secret that holds a plain `password` instead arrives
  as `DEEPMARKET_IN_PASSWORD` / `DEEPMARKET_OUT_PASSWORD`; it is obscured here through
  `rclone obscure -` on stdin, never on a command line;
- `DEEPMARKET_TRAIN_ARGS` a JSON object of training args (`$(DATA_DIR)` and `$(MODEL_DIR)` in
  a value are replaced by the two directories); `DEEPMARKET_MODEL` the DEEPaaS model name;
- `DEEPMARKET_DATA_DIR`, `DEEPMARKET_MODEL_DIR` where the data goes and where the module writes
  its model (also exported as AI4OS's `DATA_PATH` / `MODELS_PATH`);
- optionally `DEEPMARKET_PROGRESS_URL` + `DEEPMARKET_PROGRESS_TOKEN` (the operator's progress
  endpoint and this run's token).

Success is judged by evidence, never by `deepaas-cli`'s exit status alone: its result file
must exist with status `done` (a hard-coded string, so also:) the model directory must hold
files written by this training, and every uploaded file must be listed back with its size.
The outcome is written as JSON to the container's termination message (what the operator
reads, ≤ 4 KiB) and the exit status names the failure class. User code never sees the
credentials: the training process gets an environment without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# Exit statuses: the Job's podFailurePolicy fails the run at once on the ones a retry cannot fix.
EXIT_OK = 0
EXIT_CONFIG = 10  # InvalidSpec: nothing to retry
EXIT_DATA = 11  # DataUnavailable: wrong credentials, missing or empty folder
EXIT_TRAINING = 12  # TrainingFailed: the module's train() raised or produced nothing
EXIT_UPLOAD = 13  # UploadFailed: may be transient, so the Job retries it (backoffLimit)
REASONS = {
    EXIT_CONFIG: "InvalidSpec",
    EXIT_DATA: "DataUnavailable",
    EXIT_TRAINING: "TrainingFailed",
    EXIT_UPLOAD: "UploadFailed",
}
TERMINATION_LIMIT = 4096  # bytes Kubernetes keeps of a termination message
ERROR_LINES = 12  # lines of the training's stderr kept in the reason's message
SUMS_FILE = "SHA256SUMS"
RESULT_FILE = "trainingrun.json"
PROGRESS_PREFIX = "deepmarket-progress "
RETRY_S = 1.0  # before the one retry of a progress post
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# `2026-11-29 14:46:50.013 16320 ERROR deepaas-cli ` — oslo.log's prefix on each line.
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \d+ [A-Z]+ \S+ (\[-\] )?")
HTTP_STATUS = re.compile(r"\b([45]\d\d) ([A-Z][A-Za-z ]+?)(?:[:,.\"]|$)")
SECRET_ENV = re.compile(
    r"^(RCLONE_CONFIG_|DEEPMARKET_(IN|OUT)_PASSWORD$|DEEPMARKET_PROGRESS_TOKEN$)"
)


class StepFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Secrets:
    """Every credential value seen, so no message or log line can carry one out."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str | None) -> None:
        if value and len(value) >= 4:
            self.values.add(value)

    def scrub(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text


SECRETS = Secrets()


def say(message: str) -> None:
    print(SECRETS.scrub(message), flush=True)


# --- progress -----------------------------------------------------------------------------


class Progress:
    """Reports progress to stdout and, when configured, to the operator's progress endpoint.

    Posts are throttled (at most one per `every` seconds; a final one always goes out) so a
    chatty module costs the endpoint, and through it the API server, a bounded rate.
    """

    def __init__(self, env: dict[str, str], every: float = 2.0) -> None:
        self.url = env.get("DEEPMARKET_PROGRESS_URL", "").strip()
        self.token = env.get("DEEPMARKET_PROGRESS_TOKEN", "").strip()
        self.every = every
        self.last_post = 0.0
        self.state: dict[str, Any] = {}
        self.lock = threading.Lock()

    def update(self, force: bool = False, **fields: Any) -> None:
        with self.lock:
            self.state.update({k: v for k, v in fields.items() if v is not None})
            state = dict(self.state)
            now = time.monotonic()
            due = force or now - self.last_post >= self.every
            if due:
                self.last_post = now
        say(PROGRESS_PREFIX + json.dumps(state, sort_keys=True))
        if due and self.url and self.token:
            self._post(state)

    def _post(self, state: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(state).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            method="POST",
        )
        for attempt in (1, 2):
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    answer.read()
                return
            except urllib.error.HTTPError as exc:
                # 503: no operator replica leads right now (a hand-over); one retry.
                if exc.code != 503 or attempt == 2:
                    say(f"progress endpoint answered {exc.code}; training goes on")
                    return
            except OSError as exc:  # best effort: the run's outcome does not depend on it
                if attempt == 2:
                    say(f"progress endpoint unreachable ({exc}); training goes on")
                    return
            time.sleep(RETRY_S)


def read_progress_file(path: Path) -> dict[str, Any] | None:
    """What the module wrote to $DEEPMARKET_PROGRESS_FILE (JSON), or None if absent/partial."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    for key in ("percent", "epoch", "epochs", "etaSeconds"):
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        out["metrics"] = {
            str(k)[:63]: float(v)
            for k, v in list(metrics.items())[:16]
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    if "percent" in out:
        out["percent"] = max(0.0, min(100.0, float(out["percent"])))
    return out


# --- rclone ---------------------------------------------------------------------------------


def rclone_env(env: dict[str, str], rclone: str) -> dict[str, str]:
    """The environment for rclone: each remote's plain `password` obscured into `_PASS`."""
    out = dict(env)
    for side in ("IN", "OUT"):
        plain = out.pop(f"DEEPMARKET_{side}_PASSWORD", "")
        SECRETS.add(plain)
        SECRETS.add(out.get(f"RCLONE_CONFIG_{side}_PASS"))
        if plain and not out.get(f"RCLONE_CONFIG_{side}_PASS"):
            done = subprocess.run(
                [rclone, "obscure", "-"], input=plain, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise StepFailed(EXIT_CONFIG, "could not obscure the WebDAV password with rclone")
            out[f"RCLONE_CONFIG_{side}_PASS"] = done.stdout.strip()
            SECRETS.add(out[f"RCLONE_CONFIG_{side}_PASS"])
    return out


def rclone_problem(stderr: str, url: str) -> str:
    """One line that says what the WebDAV server answered, e.g. `401 Unauthorized`."""
    text = ANSI.sub("", SECRETS.scrub(stderr))
    status = HTTP_STATUS.search(text)
    if status:
        code, words = status.group(1), status.group(2).strip()
        hint = {
            "401": "the credentials were refused (expired app password? check the Secret)",
            "403": "the account may not read or write this folder",
            "404": "the folder does not exist",
            "507": "the storage is full",
        }.get(code, "the WebDAV server refused the request")
        return f"{url} answered HTTP {code} {words}: {hint}"
    if "directory not found" in text:
        return f"{url}: the folder does not exist (HTTP 404); create it or fix the URL"
    lines = [ln.strip() for ln in text.splitlines() if "ERROR" in ln or "Failed" in ln]
    detail = lines[-1] if lines else text.strip().splitlines()[-1:] or ["no output"]
    return f"{url}: {detail if isinstance(detail, str) else detail[0]}"[:600]


def run_rclone(rclone: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        # Data sets are often many small files: more parallel transfers than rclone's 4.
        [rclone, *args, "--low-level-retries", "3", "--retries", "2", "--contimeout", "15s",
         "--timeout", "60s", "--transfers", "16", "--checkers", "16"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def count_files(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def data_in(rclone: str, env: dict[str, str], url: str, data_dir: Path, progress: Progress) -> None:
    progress.update(force=True, phase="DataIn", message=f"copying {url}")
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done = run_rclone(rclone, ["copy", "in:", str(data_dir)], env)
    if done.returncode != 0:
        raise StepFailed(EXIT_DATA, rclone_problem(done.stderr, url))
    count, size = count_files(data_dir)
    if count == 0:
        raise StepFailed(EXIT_DATA, f"{url}: the folder is empty; put the training data there")
    say(f"data in: {count} files, {size} bytes from {url} in {time.monotonic() - started:.1f}s")
    progress.update(force=True, phase="DataIn", message=f"{count} files, {size} bytes in")


# --- training -----------------------------------------------------------------------------


def train_argv(args: dict[str, Any], dirs: dict[str, str]) -> list[str]:
    argv: list[str] = []
    for name, value in args.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise StepFailed(EXIT_CONFIG, f"training arg name {name!r} is not an identifier")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            text = json.dumps(value)
        else:
            text = str(value)
        for key, path in dirs.items():
            text = text.replace(f"$({key})", path)
        argv += [f"--{name}", text]
    return argv


def error_tail(stderr: str, lines: int = ERROR_LINES) -> str:
    """The last lines of a training's error output without log prefixes and colours."""
    kept: list[str] = []
    start = stderr.rfind("Traceback (most recent call last)")
    if start >= 0:  # the traceback says what went wrong; INFO lines around it do not
        stderr = stderr[stderr.rfind("\n", 0, start) + 1 :]
    for raw in stderr.splitlines():
        line = LOG_PREFIX.sub("", ANSI.sub("", raw)).rstrip()
        if line.strip():
            kept.append(line)
    return SECRETS.scrub("\n".join(kept[-lines:]))[-1500:]


def user_env(env: dict[str, str]) -> dict[str, str]:
    """The training process's environment: no credential of any kind."""
    return {k: v for k, v in env.items() if not SECRET_ENV.match(k)}


def train(
    env: dict[str, str], args: dict[str, Any], dirs: dict[str, str], progress: Progress
) -> dict[str, Any]:
    model_dir = Path(dirs["MODEL_DIR"])
    model_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="deepmarket-train-"))
    result_file = work / "result.json"
    progress_file = work / "progress.json"
    cli = [env.get("DEEPMARKET_DEEPAAS_CLI", "deepaas-cli")]
    if env.get("DEEPMARKET_MODEL"):
        cli += ["--model-name", env["DEEPMARKET_MODEL"]]
    cli += ["--deepaas_method_output", str(result_file), "train", *train_argv(args, dirs)]
    child_env = user_env(env)
    child_env.update(
        DATA_PATH=dirs["DATA_DIR"],
        MODELS_PATH=dirs["MODEL_DIR"],
        DEEPMARKET_PROGRESS_FILE=str(progress_file),
    )
    say("training: " + " ".join(cli))
    started = time.time()
    progress.update(force=True, phase="Training", message="deepaas-cli train started")
    # deepaas-cli logs (tracebacks included) to stdout: keep both streams, in order.
    stderr_file = work / "output.txt"
    with stderr_file.open("w") as err:
        proc = subprocess.Popen(cli, env=child_env, stdout=err, stderr=subprocess.STDOUT, text=True)
        seen: dict[str, Any] | None = None
        while True:
            try:
                proc.wait(timeout=1.0)  # returns as soon as training ends
                break
            except subprocess.TimeoutExpired:
                pass
            now = read_progress_file(progress_file)
            if now and now != seen:
                seen = now
                progress.update(phase="Training", **now)
    final = read_progress_file(progress_file)  # what the module wrote last, however fast
    if final and final != seen:
        progress.update(phase="Training", **final)
    stderr = stderr_file.read_text(errors="replace")
    sys.stdout.write(SECRETS.scrub(stderr[-20000:]))
    result = None
    if result_file.exists():
        try:
            result = json.loads(result_file.read_text(encoding="utf-8"))
        except ValueError:
            result = None
    produced = [p for p in model_dir.rglob("*") if p.is_file() and p.stat().st_mtime >= started - 1]
    done = isinstance(result, dict) and result.get("status") == "done"
    if not done:
        tail = error_tail(stderr) or "no error output"
        raise StepFailed(
            EXIT_TRAINING,
            f"deepaas-cli train exited {proc.returncode} without a result:\n{tail}",
        )
    if proc.returncode != 0:
        say(f"deepaas-cli exited {proc.returncode} but wrote its result: judged by the evidence")
    if not produced:
        raise StepFailed(
            EXIT_TRAINING,
            f"training finished but wrote no file into {model_dir}; the module must save its "
            "model there (set spec.modelDir to the directory it writes to)",
        )
    output = (result.get("result") or {}).get("output")
    metrics = final_metrics(output)
    say(f"training done in {time.time() - started:.1f}s; {len(produced)} files written")
    return {"metrics": metrics, "result": output}


def final_metrics(output: Any) -> dict[str, float]:
    """Numbers the module's train() returned: what status.metrics shows."""
    if not isinstance(output, dict):
        return {}
    return {
        str(k)[:63]: float(v)
        for k, v in output.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


# --- upload ---------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_folders(rclone: str, env: dict[str, str], url: str) -> None:
    """Create the output folder and its missing parents (WebDAV's MKCOL answers 409 when the
    parent is missing, and rclone does not create folders above its remote's root)."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if run_rclone(rclone, ["lsjson", "--max-depth", "1", "out:"], env).returncode == 0:
        return
    for n in range(1, len(parts)):
        parent = f"{scheme}://{host}/" + "/".join(parts[:n])
        # Folders above the user's WebDAV root refuse MKCOL; the sync after this reports a
        # real problem with the server's own answer.
        run_rclone(rclone, ["mkdir", f"out:{parts[n]}"], {**env, "RCLONE_CONFIG_OUT_URL": parent})


def upload(
    rclone: str,
    env: dict[str, str],
    url: str,
    run: str,
    model_dir: Path,
    record: dict[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    """Sync the model directory to `<output>/<run>/` with SHA256SUMS, then list it back."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    entries = [
        {"path": p.relative_to(model_dir).as_posix(), "size": p.stat().st_size, "sha256": sha256(p)}
        for p in files
    ]
    sums = "".join(f"{e['sha256']}  {e['path']}\n" for e in entries)
    (model_dir / SUMS_FILE).write_text(sums, encoding="utf-8")
    (model_dir / RESULT_FILE).write_text(json.dumps({**record, "files": entries}, indent=1))
    target = f"out:{run}"
    started = time.monotonic()
    progress.update(force=True, phase="Uploading", message=f"uploading {len(entries)} files")
    make_folders(rclone, env, url)
    done = run_rclone(rclone, ["sync", str(model_dir), target], env)
    if done.returncode != 0:
        raise StepFailed(EXIT_UPLOAD, rclone_problem(done.stderr, url))
    listed = run_rclone(rclone, ["lsjson", "-R", "--files-only", target], env)
    if listed.returncode != 0:
        raise StepFailed(EXIT_UPLOAD, rclone_problem(listed.stderr, url))
    remote = {item["Path"]: item["Size"] for item in json.loads(listed.stdout or "[]")}
    for entry in entries:
        if remote.get(entry["path"]) != entry["size"]:
            raise StepFailed(
                EXIT_UPLOAD,
                f"{url}/{run}/{entry['path']}: uploaded size {remote.get(entry['path'])} "
                f"differs from {entry['size']}",
            )
    folder = url.rstrip("/") + f"/{run}/"
    say(f"uploaded {len(entries)} files to {folder} in {time.monotonic() - started:.1f}s")
    return {"url": folder, "files": entries}


# --- the whole step -----------------------------------------------------------------------


def termination_message(outcome: dict[str, Any]) -> str:
    """JSON of the outcome within Kubernetes' 4 KiB: the file list shrinks first."""
    outcome = json.loads(SECRETS.scrub(json.dumps(outcome)))
    text = json.dumps(outcome, separators=(",", ":"))
    output = outcome.get("output") or {}
    files = list(output.get("files") or [])
    while len(text.encode()) > TERMINATION_LIMIT and files:
        files.pop()
        output["files"] = files
        output["truncated"] = True
        text = json.dumps(outcome, separators=(",", ":"))
    while len(text.encode()) > TERMINATION_LIMIT and outcome.get("message"):
        outcome["message"] = outcome["message"][len(outcome["message"]) // 4 :]
        text = json.dumps(outcome, separators=(",", ":"))
    return text


def run_step(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    progress = Progress(env)
    try:
        run = env.get("DEEPMARKET_RUN", "").strip()
        in_url = env.get("DEEPMARKET_INPUT_URL", "").strip()
        out_url = env.get("DEEPMARKET_OUTPUT_URL", "").strip()
        if not (run and in_url and out_url):
            raise StepFailed(
                EXIT_CONFIG,
                "DEEPMARKET_RUN, DEEPMARKET_INPUT_URL and DEEPMARKET_OUTPUT_URL are needed",
            )
        try:
            args = json.loads(env.get("DEEPMARKET_TRAIN_ARGS") or "{}")
        except ValueError as exc:
            raise StepFailed(EXIT_CONFIG, f"DEEPMARKET_TRAIN_ARGS is not JSON: {exc}") from None
        if not isinstance(args, dict):
            raise StepFailed(EXIT_CONFIG, "DEEPMARKET_TRAIN_ARGS must be a JSON object")
        rclone = env.get("DEEPMARKET_RCLONE", "rclone")
        dirs = {
            "DATA_DIR": env.get("DEEPMARKET_DATA_DIR", "/srv/data"),
            "MODEL_DIR": env.get("DEEPMARKET_MODEL_DIR", "/srv/weights"),
        }
        renv = rclone_env(env, rclone)
        data_in(rclone, renv, in_url, Path(dirs["DATA_DIR"]), progress)
        trained = train(env, args, dirs, progress)
        record = {"run": run, "args": args, "metrics": trained["metrics"], "input": in_url}
        output = upload(rclone, renv, out_url, run, Path(dirs["MODEL_DIR"]), record, progress)
    except StepFailed as failed:
        reason = REASONS[failed.code]
        say(f"{reason}: {failed.message}")
        progress.update(force=True, phase="Failed", message=f"{reason}: {failed.message[:200]}")
        return failed.code, {"ok": False, "reason": reason, "message": failed.message}
    progress.update(force=True, phase="Succeeded", percent=100.0, metrics=trained["metrics"])
    return EXIT_OK, {"ok": True, "output": output, "metrics": trained["metrics"]}


def main() -> int:
    env = dict(os.environ)
    code, outcome = run_step(env)
    path = Path(env.get("DEEPMARKET_TERMINATION_LOG", "/dev/termination-log"))
    try:
        path.write_text(termination_message(outcome), encoding="utf-8")
    except OSError as exc:
        say(f"could not write the outcome to {path}: {exc}")
    return code


if __name__ == "__main__":
    sys.exit(main())
