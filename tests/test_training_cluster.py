"""TrainingRun against the real control plane: `kubectl apply -k controller/`, the operator as
its ServiceAccount, Jobs run by the real Job controller on KWOK nodes. KWOK's stages make a
Job pod succeed, or — labelled through spec.podTemplate — fail with a given exit code and
termination message, or keep running (devcluster/config.py).

Write calls are counted from the apiserver's audit log by the operator's user name.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_operator_cluster import SA_USER, WRITE_VERBS, Operator, apply, get, socket_port

from deepmarket.devcluster.config import OUTCOME_LABEL

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
TR = "/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/trainingruns"
JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"
IMAGE = "ghcr.io/deepmarket/digits-classifier:1.0.0"
DAV = "https://cloud.example.org/remote.php/dav/files/ana"
SECRET_PASS = "obscured-Zx81-secret-value"
OPERATOR_LOG: list[Path] = []


@pytest.fixture(scope="module")
def installed(cluster):
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "controller"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/trainingruns.deepmarket.dev",
        "crd/deepmodules.deepmarket.dev",
    )
    cluster.kubectl(
        "scale", "-n", "deepmarket-system", "deployment/deepmarket-operator", "--replicas=0"
    )
    return cluster


@pytest.fixture(scope="module")
def operator(installed, tmp_path_factory):
    with socket_port() as port:
        pass
    op = Operator(
        installed,
        tmp_path_factory.mktemp("training-operator"),
        "--progress-listen",
        f"127.0.0.1:{port}",
        "--progress-url",
        f"http://127.0.0.1:{port}/progress",
        name="training-operator",
    )
    op.progress = f"http://127.0.0.1:{port}/progress"  # type: ignore[attr-defined]
    op.start()
    OPERATOR_LOG[:] = [op.log]
    yield op
    op.stop()


def run(
    name: str, outcome: str | None = None, exit_code: int = 0, message: dict | None = None, **spec
) -> dict:
    body = {
        "image": IMAGE,
        "model": "digits",
        "args": {"data_dir": "$(DATA_DIR)"},
        "data": {
            "input": {"url": f"{DAV}/digits", "secretRef": "webdav"},
            "output": {"url": f"{DAV}/models"},
        },
        **spec,
    }
    if outcome:
        body["podTemplate"] = {
            "metadata": {
                "labels": {OUTCOME_LABEL: outcome},
                "annotations": {
                    "deepmarket.dev/kwok-exit-code": str(exit_code),
                    "deepmarket.dev/kwok-message": json.dumps(message or {}),
                },
            }
        }
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": body,
    }


def secret() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "webdav"},
        "stringData": {"RCLONE_WEBDAV_USER": "ana", "RCLONE_WEBDAV_PASS": SECRET_PASS},
    }


def tr(cluster, ns: str, name: str) -> dict | None:
    return get(cluster, TR.format(ns=ns) + f"/{name}")


def jobs(cluster, ns: str) -> list[dict]:
    return get(cluster, JOBS.format(ns=ns))["items"]


def wait_phase(
    cluster, ns: str, name: str, *phases: str, reason: str | None = None, timeout: float = 90
) -> dict:
    def there() -> bool:
        st = (tr(cluster, ns, name) or {}).get("status") or {}
        return st.get("phase") in phases and (reason is None or st.get("reason") == reason)

    try:
        cluster.wait_for(there, f"TrainingRun {ns}/{name} {phases} {reason or ''}", timeout=timeout)
    except Exception as exc:
        seen = tr(cluster, ns, name)
        found = get(cluster, JOBS.format(ns=ns))["items"]
        pods = get(cluster, f"/api/v1/namespaces/{ns}/pods")["items"]
        raise AssertionError(
            f"{exc}\nrun status: {json.dumps((seen or {}).get('status'))}\n"
            f"jobs: {json.dumps([j.get('status') for j in found])}\n"
            f"pods: {json.dumps([p.get('status', {}).get('phase') for p in pods])}\n"
            f"operator log:\n{OPERATOR_LOG[0].read_text()[-4000:] if OPERATOR_LOG else ''}"
        ) from None
    return tr(cluster, ns, name)


def writes(cluster, mark: int, ns: str) -> list[str]:
    out = []
    for ev in cluster.audit_events(mark):
        if ev.get("stage") != "ResponseComplete" or ev.get("verb") not in WRITE_VERBS:
            continue
        if ev.get("user", {}).get("username") != SA_USER:
            continue
        ref = ev.get("objectRef", {})
        if ref.get("namespace") == ns:
            out.append(
                f"{ev['verb']} {ref.get('resource')}/{ref.get('subresource', '')}"
                f"{ref.get('name', '')}"
            )
    return out


def cond(obj: dict, type_: str) -> dict:
    return next((c for c in obj["status"]["conditions"] if c["type"] == type_), {})


def post_progress(operator, ns: str, name: str, token: str, report: dict) -> int:
    req = urllib.request.Request(
        f"{operator.progress}/{ns}/{name}",
        data=json.dumps(report).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def job_env(job: dict) -> dict[str, dict]:
    (train,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "train"]
    return {e["name"]: e for e in train["env"]}


def test_success_then_ttl_never_resurrects(operator, namespace):
    cluster = operator.cluster
    mark = cluster.audit_mark()
    apply(cluster, namespace, secret(), run("ok", runPolicy={"ttlSecondsAfterFinished": 3}))
    done = wait_phase(cluster, namespace, "ok", "Succeeded")
    st = done["status"]
    assert st["output"]["url"] == f"{DAV}/models/ok/"
    assert cond(done, "Succeeded")["status"] == "True" and cond(done, "Created")["status"] == "True"
    assert st["observedGeneration"] == 1 and st["attempts"] == 1 and st["completionTime"]
    # the operator deletes the Job after the TTL; the run stays Succeeded and is never re-run
    cluster.wait_for(lambda: not jobs(cluster, namespace), "Job deleted after its TTL", timeout=60)
    time.sleep(3)  # give a resurrecting operator the chance to misbehave
    assert jobs(cluster, namespace) == []
    assert tr(cluster, namespace, "ok")["status"] == st
    made = writes(cluster, mark, namespace)
    assert made.count("create jobs/ok") == 1
    assert "delete jobs/ok" in made
    # Job, Created/Running/Succeeded status writes, the Event, the TTL delete: at most 6
    assert len(made) <= 6, made
    events = get(cluster, f"/api/v1/namespaces/{namespace}/events")["items"]
    assert any(e["reason"] == "Succeeded" and e["involvedObject"]["name"] == "ok" for e in events)
    table = cluster.kubectl("get", "tr", "-n", namespace, "-o", "wide").stdout
    assert table.split()[:8] == [
        "NAME",
        "MODULE",
        "PHASE",
        "PROGRESS",
        "GPUS",
        "REASON",
        "OUTPUT",
        "AGE",
    ]
    assert "Succeeded" in table and "100%" in table
    # the secret value is nowhere: not in the Job (only a reference), status, events, logs
    everything = json.dumps([done, events]) + operator.log.read_text()
    assert SECRET_PASS not in everything


def test_progress_suspend_restart_and_delete(operator, namespace):
    cluster = operator.cluster
    apply(cluster, namespace, secret(), run("long", outcome="Running", resources={"gpu": 1}))
    wait_phase(cluster, namespace, "long", "Running")
    (job,) = jobs(cluster, namespace)
    env = job_env(job)
    assert env["RCLONE_CONFIG_IN_PASS"]["valueFrom"]["secretKeyRef"]["name"] == "webdav"
    assert SECRET_PASS not in json.dumps(job)
    token = env["DEEPMARKET_PROGRESS_TOKEN"]["value"]
    assert post_progress(operator, namespace, "long", "wrong", {"percent": 1}) == 403
    assert post_progress(operator, namespace, "nope", token, {"percent": 1}) == 404
    mark = cluster.audit_mark()
    sent = time.monotonic()
    report = {
        "phase": "Training",
        "percent": 40,
        "epoch": 2,
        "epochs": 5,
        "etaSeconds": 90,
        "metrics": {"loss": 0.25},
    }
    assert post_progress(operator, namespace, "long", token, report) == 204

    def shows() -> bool:
        return ((tr(cluster, namespace, "long") or {}).get("status", {}).get("progress") or {}).get(
            "percent"
        ) == 40

    cluster.wait_for(shows, "progress in status", timeout=30)
    print(f"progress → status: {time.monotonic() - sent:.2f}s")
    st = tr(cluster, namespace, "long")["status"]
    assert st["progress"]["summary"] == "40% epoch 2/5 ETA 1m30s" and st["metrics"]["loss"] == 0.25
    assert "40% epoch 2/5" in cluster.kubectl("get", "tr", "-n", namespace).stdout
    # a burst of 30 reports costs at most a few status writes (one per 5 s), the last one wins
    burst = time.monotonic()
    for i in range(30):
        post_progress(operator, namespace, "long", token, {**report, "percent": 41 + i})
    cluster.wait_for(
        lambda: tr(cluster, namespace, "long")["status"]["progress"]["percent"] == 70,
        "latest progress",
        timeout=30,
    )
    took = time.monotonic() - burst
    status_writes = [w for w in writes(cluster, mark, namespace) if "trainingruns/status" in w]
    # the first report's write, then at most one per 5 s while the burst lasted (+1 trailing)
    assert 2 <= len(status_writes) <= 3 + int(took // 5), (status_writes, took)
    # suspend: the Job is suspended, its pod goes; resume: a pod runs again
    cluster.kubectl(
        "patch",
        "tr",
        "long",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"runPolicy":{"suspend":true}}}',
    )
    wait_phase(cluster, namespace, "long", "Suspended")
    assert jobs(cluster, namespace)[0]["spec"]["suspend"] is True
    cluster.wait_for(
        lambda: not get(cluster, f"/api/v1/namespaces/{namespace}/pods")["items"],
        "suspended pods gone",
        timeout=60,
    )
    cluster.kubectl(
        "patch",
        "tr",
        "long",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"runPolicy":{"suspend":false}}}',
    )
    wait_phase(cluster, namespace, "long", "Running")
    # the operator killed mid-run: restarted, it adopts the Job (same uid), creates none
    uid = jobs(cluster, namespace)[0]["metadata"]["uid"]
    operator.stop(signal.SIGKILL)
    mark = cluster.audit_mark()
    operator.start()
    time.sleep(5)
    assert [j["metadata"]["uid"] for j in jobs(cluster, namespace)] == [uid]
    assert not [w for w in writes(cluster, mark, namespace) if w.startswith("create")]
    assert tr(cluster, namespace, "long")["status"]["phase"] == "Running"
    # deleting the run stops the training: Job and pods go (ownerReferences)
    cluster.kubectl("delete", "tr", "long", "-n", namespace, "--wait=true")
    cluster.wait_for(
        lambda: (
            not jobs(cluster, namespace)
            and not get(cluster, f"/api/v1/namespaces/{namespace}/pods")["items"]
        ),
        "Job and pods deleted with the run",
        timeout=90,
    )


def test_failures_say_what_to_fix(operator, namespace):
    cluster = operator.cluster
    raised = {
        "ok": False,
        "reason": "TrainingFailed",
        "message": "ValueError: data_dir /srv/data/cats: sub-directories must be 0 ... 9",
    }
    unavailable = {
        "ok": False,
        "reason": "DataUnavailable",
        "message": f"{DAV}/digits answered HTTP 401 Unauthorized: expired?",
    }
    apply(
        cluster,
        namespace,
        secret(),
        run("raises", "Failed", 12, raised, runPolicy={"backoffLimit": 1}),
        run("nodata", "Failed", 11, unavailable, runPolicy={"backoffLimit": 3}),
        run("slow", "Running", runPolicy={"activeDeadlineSeconds": 3}),
    )
    r = wait_phase(cluster, namespace, "raises", "Failed")
    assert r["status"]["reason"] == "TrainingFailed" and r["status"]["attempts"] == 2
    assert "sub-directories must be 0 ... 9" in cond(r, "Failed")["message"]
    assert "backoffLimit" in cond(r, "Failed")["message"]
    r = wait_phase(cluster, namespace, "nodata", "Failed")
    # a retry cannot fix data that is not there: failed at once despite backoffLimit 3
    assert r["status"]["reason"] == "DataUnavailable" and r["status"]["attempts"] == 1
    assert "HTTP 401" in cond(r, "Failed")["message"]
    r = wait_phase(cluster, namespace, "slow", "Failed")
    assert r["status"]["reason"] == "DeadlineExceeded"
    events = get(cluster, f"/api/v1/namespaces/{namespace}/events")["items"]
    # The run's own Events (its Job, of the same name, has the Job controller's).
    warned = {
        e["involvedObject"]["name"]: e["reason"]
        for e in events
        if e["type"] == "Warning" and e["involvedObject"].get("kind") == "TrainingRun"
    }
    assert warned.get("nodata") == "DataUnavailable"


def test_unschedulable_gpu_and_quota_are_named_not_crash_looped(operator, namespace):
    cluster = operator.cluster
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpus"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "2"}},
    }
    apply(cluster, namespace, quota)
    cluster.wait_for(
        lambda: (
            (get(cluster, f"/api/v1/namespaces/{namespace}/resourcequotas/gpus") or {})
            .get("status", {})
            .get("hard")
        ),
        "quota status",
        timeout=60,
    )
    apply(
        cluster,
        namespace,
        secret(),
        run("toomany", resources={"gpu": 4}),
        run("product", resources={"gpu": 1, "gpuProduct": "NVIDIA-H100-NVL"}),
    )
    r = wait_phase(cluster, namespace, "toomany", "Pending", reason="Unschedulable")
    msg = cond(r, "Created")["message"]
    assert msg.startswith("quota too small: 0 of 2 GPUs in use (ResourceQuota 'gpus'"), msg
    assert "asks for 4" in msg and f"deepmarket admin quota {namespace} --gpus N" in msg
    r = wait_phase(cluster, namespace, "product", "Pending", reason="Unschedulable")
    assert "NVIDIA-H100-NVL" in cond(r, "Running")["message"]
    assert [j["metadata"]["name"] for j in jobs(cluster, namespace)] == ["product"]
    mark = cluster.audit_mark()
    time.sleep(6)
    assert writes(cluster, mark, namespace) == []  # waiting costs no writes
    # raise the quota: the waiting run starts, no restart or edit needed
    cluster.kubectl(
        "patch",
        "resourcequota",
        "gpus",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"hard":{"requests.nvidia.com/gpu":"8"}}}',
    )
    wait_phase(cluster, namespace, "toomany", "Succeeded", "Running")


def test_admission_refuses_bad_specs(installed, namespace):
    cluster = installed
    bad = [
        (run("x1", image="ghcr.io/a/b:latest"), "latest"),
        ({**run("x3"), "spec": {"data": run("x3")["spec"]["data"]}}, "spec.module"),
        (run("a" * 53), "52"),
    ]
    for obj, words in bad:
        done = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False
        )
        assert done.returncode != 0 and words in done.stderr, (words, done.stderr)
    apply(cluster, namespace, run("fixed"))
    changed = run("fixed")
    changed["spec"]["data"]["output"]["url"] = f"{DAV}/elsewhere"
    done = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False
    )
    assert done.returncode != 0 and "cannot change after creation" in done.stderr
    # The args are what the run trained with: a change, an addition or a removal is refused.
    for args in ({"data_dir": "$(DATA_DIR)", "max_iter": 5}, {"data_dir": "/elsewhere"}, None):
        edited = run("fixed")
        if args is None:
            del edited["spec"]["args"]
        else:
            edited["spec"]["args"] = args
        done = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(edited), check=False
        )
        assert done.returncode != 0 and "spec.args cannot" in done.stderr, (args, done.stderr)
    relabelled = run("fixed")
    relabelled["metadata"]["labels"] = {"team": "a"}  # the rest of the object stays editable
    done = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(relabelled), check=False
    )
    assert done.returncode == 0, done.stderr
    explain = cluster.kubectl("explain", "trainingrun.spec.runPolicy").stdout
    assert "ttlSecondsAfterFinished" in explain and "never" in explain


def deepmarket_cli(operator, namespace: str, *args: str, env: dict | None = None):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "deepmarket",
            *args,
            "-n",
            namespace,
            "--kubeconfig",
            str(operator.cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_cli_train_follow_and_promote(operator, namespace):
    cluster = operator.cluster
    env = {"DEEPMARKET_WEBDAV_USER": "ana", "DEEPMARKET_WEBDAV_PASSWORD": "plain-App-pass-77"}
    done = deepmarket_cli(
        operator,
        namespace,
        "train",
        "digits-classifier",
        "--image",
        IMAGE,
        "--data",
        f"{DAV}/digits",
        "--output",
        f"{DAV}/models",
        "--arg",
        "data_dir=$(DATA_DIR)",
        "--arg",
        "max_iter=50",
        "--name",
        "cli-run",
        "--follow",
        "--interval",
        "0.5",
        "--timeout",
        "120",
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cli-run succeeded" in done.stdout and f"{DAV}/models/cli-run/" in done.stdout
    assert "plain-App-pass-77" not in done.stdout + done.stderr
    run_obj = tr(cluster, namespace, "cli-run")
    assert run_obj["spec"]["args"] == {"data_dir": "$(DATA_DIR)", "max_iter": 50}
    secret_obj = get(cluster, f"/api/v1/namespaces/{namespace}/secrets/cli-run-webdav")
    assert secret_obj["metadata"]["ownerReferences"][0]["uid"] == run_obj["metadata"]["uid"]
    import base64

    stored = {k: base64.b64decode(v).decode() for k, v in secret_obj["data"].items()}
    assert stored["RCLONE_WEBDAV_USER"] == "ana"
    assert (
        stored["RCLONE_WEBDAV_PASS"]
        and stored["RCLONE_WEBDAV_PASS"] != env["DEEPMARKET_WEBDAV_PASSWORD"]
    )  # obscured, as rclone wants it
    assert "plain-App-pass-77" not in json.dumps(run_obj)
    # a failing run: follow exits 1 with the reason
    apply(
        cluster,
        namespace,
        run(
            "bad",
            "Failed",
            11,
            {"ok": False, "reason": "DataUnavailable", "message": "folder missing (HTTP 404)"},
        ),
    )
    done = deepmarket_cli(
        operator, namespace, "train", "follow", "bad", "--interval", "0.5", "--timeout", "120"
    )
    assert done.returncode == 1 and "DataUnavailable: folder missing (HTTP 404)" in done.stderr
    # promote refuses what did not succeed, serves what did
    done = deepmarket_cli(operator, namespace, "promote", "bad")
    assert (
        done.returncode == 1 and "bad is Failed" in done.stderr and "Traceback" not in done.stderr
    )
    done = deepmarket_cli(operator, namespace, "promote", "cli-run", "--name", "served")
    assert done.returncode == 0, done.stderr
    dm = get(cluster, f"/apis/deepmarket.dev/v1alpha1/namespaces/{namespace}/deepmodules/served")
    assert dm["spec"]["weights"] == {"trainingRun": "cli-run"}

    def deployed() -> bool:
        found = get(cluster, f"/apis/apps/v1/namespaces/{namespace}/deployments/served")
        return bool(found)

    cluster.wait_for(deployed, "the promoted DeepModule's Deployment", timeout=90)
    deploy = get(cluster, f"/apis/apps/v1/namespaces/{namespace}/deployments/served")
    init = deploy["spec"]["template"]["spec"]["initContainers"][0]
    assert {"name": "RCLONE_WEBDAV_URL", "value": f"{DAV}/models/cli-run"} in init["env"]
    assert init["envFrom"] == [{"secretRef": {"name": "cli-run-webdav"}}]


def test_the_real_step_program_reports_progress_to_the_operator(operator, namespace, tmp_path):
    """step.py run as the pod would run it, with the Job's own environment (progress URL and
    token): a module's progress file reaches the TrainingRun's status through the endpoint."""
    import subprocess
    import sys

    from webdav_server import PASSWORD, USER, obscure, require_tools, webdav

    from deepmarket.controller.training import step

    require_tools()
    cluster = operator.cluster
    apply(cluster, namespace, secret(), run("live", outcome="Running"))
    wait_phase(cluster, namespace, "live", "Running")
    (job,) = jobs(cluster, namespace)
    env = {k: e["value"] for k, e in job_env(job).items() if "value" in e}
    weights = tmp_path / "weights"
    fake = tmp_path / "fake-cli"
    fake.write_text(
        "#!/bin/sh\n"
        'echo \'{"percent": 60, "epoch": 3, "epochs": 5, "etaSeconds": 20, '
        '"metrics": {"val_accuracy": 0.91}}\' > "$DEEPMARKET_PROGRESS_FILE"\n'
        "sleep 4\n"
        f"mkdir -p {weights}; echo w > {weights}/model.bin\n"
        'while [ $# -gt 0 ]; do [ "$1" = "--deepaas_method_output" ] && out="$2"; shift; done\n'
        'echo \'{"status": "done", "result": {"output": {"accuracy": 0.9}}}\' > "$out"\n'
    )
    fake.chmod(0o755)
    with webdav(tmp_path / "dav") as dav:
        (dav.root / "digits" / "1").mkdir(parents=True)
        (dav.root / "digits" / "1" / "a.png").write_bytes(b"png")
        env.update({
            "PATH": __import__("os").environ["PATH"],
            "RCLONE_CONFIG_IN_URL": dav.url("digits"), "DEEPMARKET_INPUT_URL": dav.url("digits"),
            "RCLONE_CONFIG_OUT_URL": dav.url("models"), "DEEPMARKET_OUTPUT_URL": dav.url("models"),
            "RCLONE_CONFIG_IN_USER": USER, "RCLONE_CONFIG_OUT_USER": USER,
            "RCLONE_CONFIG_IN_PASS": obscure(PASSWORD), "RCLONE_CONFIG_OUT_PASS": obscure(PASSWORD),
            "DEEPMARKET_DATA_DIR": str(tmp_path / "data"), "DEEPMARKET_MODEL_DIR": str(weights),
            "DEEPMARKET_RCLONE": "rclone", "DEEPMARKET_DEEPAAS_CLI": str(fake),
            "DEEPMARKET_TERMINATION_LOG": str(tmp_path / "termination-log"),
        })  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", step.__file__],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def shows() -> bool:
            st = (tr(cluster, namespace, "live") or {}).get("status") or {}
            return (st.get("progress") or {}).get("epoch") == 3

        try:
            cluster.wait_for(shows, "the step's progress in status", timeout=60)
        finally:
            out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out

    # The step's last report carries train()'s own numbers; it may trail the exit (reports are
    # written at most once per interval), so wait for it rather than read status at once.
    def final() -> bool:
        st = (tr(cluster, namespace, "live") or {}).get("status") or {}
        return (st.get("metrics") or {}).get("accuracy") == 0.9

    cluster.wait_for(final, "the step's final metrics in status", timeout=60)
    assert tr(cluster, namespace, "live")["status"]["progress"]["step"] == "Succeeded"
    assert "unreachable" not in out  # every report was taken
