"""TrainingRun's pure parts: spec resolution, the Job builder and status derivation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deepmarket.catalog import load_catalog
from deepmarket.controller import INSTANCE_LABEL
from deepmarket.controller.training import step
from deepmarket.controller.training.builders import CONTAINER, RUN_LABEL, build_job, job_token
from deepmarket.controller.training.resolve import SpecProblem, resolve
from deepmarket.controller.training.status import derive_status, quota_block, summary

NOW = "2026-11-29T15:00:00Z"
IN = "https://cloud.example.org/remote.php/dav/files/ana/digits"
OUT = "https://cloud.example.org/remote.php/dav/files/ana/models"


def run(**spec: Any) -> dict[str, Any]:
    base = {
        "module": "digits-classifier",
        "data": {"input": {"url": IN, "secretRef": "webdav"}, "output": {"url": OUT}},
    }
    base.update(spec)
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "plants", "namespace": "ana", "uid": "u-1", "generation": 1},
        "spec": base,
    }


@pytest.fixture(scope="module")
def catalog():
    from pathlib import Path

    return load_catalog(Path(__file__).resolve().parent.parent)


def test_resolve_merges_catalog_and_spec(catalog) -> None:
    t = resolve(run(resources={"gpu": 2})["spec"], catalog)
    assert t.image == "ghcr.io/deepmarket/digits-classifier:1.0.0"
    assert t.model == "digits" and t.gpu == 2 and t.memory == "1024Mi"
    assert t.output.secret == "webdav"  # the output defaults to the input's Secret
    assert t.input.vendor == "nextcloud"
    with pytest.raises(SpecProblem) as err:
        resolve(run(module="nope")["spec"], catalog)
    assert err.value.reason == "ModuleNotFound"
    with pytest.raises(SpecProblem) as err:
        resolve(run()["spec"], None)
    assert err.value.reason == "CatalogUnavailable"


def job_for(catalog, **spec: Any) -> dict[str, Any]:
    r = run(**spec)
    return build_job(
        r,
        resolve(r["spec"], catalog),
        tools_image="ghcr.io/deepmarket/operator:0.1.0",
        progress_url="http://op:8081/progress/ana/plants",
        token="tok",
    )


def container(job: dict[str, Any], name: str = CONTAINER) -> dict[str, Any]:
    pod = job["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] + pod["initContainers"] if c["name"] == name)


def test_job_keeps_credentials_out_of_args_and_user_code_off_the_api(catalog) -> None:
    job = job_for(catalog, args={"data_dir": "$(DATA_DIR)"})
    train = container(job)
    assert train["command"] == ["python3", "/deepmarket/step.py"] and "args" not in train
    env = {e["name"]: e for e in train["env"]}
    assert env["RCLONE_CONFIG_IN_URL"]["value"] == IN
    assert env["RCLONE_CONFIG_IN_PASS"]["valueFrom"]["secretKeyRef"] == {
        "name": "webdav",
        "key": "RCLONE_WEBDAV_PASS",
        "optional": True,
    }
    assert env["DEEPMARKET_OUT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "webdav"
    assert json.loads(env["DEEPMARKET_TRAIN_ARGS"]["value"]) == {"data_dir": "$(DATA_DIR)"}
    assert all("value" not in e or "pass" not in e["name"].lower() for e in train["env"])
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[RUN_LABEL] == "plants" and INSTANCE_LABEL not in labels
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job_token(job) == "tok"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["onExitCodes"]["values"] == [step.EXIT_CONFIG, step.EXIT_DATA]
    assert "ttlSecondsAfterFinished" not in job["spec"]  # the operator applies the TTL


def test_job_gpu_scheduling_and_run_policy(catalog) -> None:
    job = job_for(
        catalog,
        resources={"gpu": 2, "gpuProduct": "NVIDIA-H100"},
        runPolicy={"activeDeadlineSeconds": 60, "backoffLimit": 3, "suspend": True},
    )
    train = container(job)
    assert train["resources"]["limits"]["nvidia.com/gpu"] == "2"
    pod = job["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["NVIDIA-H100"]
    assert job["spec"]["activeDeadlineSeconds"] == 60 and job["spec"]["backoffLimit"] == 3
    assert job["spec"]["suspend"] is True


def job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "plants", "uid": "j-1"},
        "spec": {"activeDeadlineSeconds": 60},
        "status": {"conditions": conditions or [], **status},
    }


def pod(phase: str, message: str | None = None, **status: Any) -> dict[str, Any]:
    cs = {"name": CONTAINER, "state": {}}
    if message is not None:
        cs["state"] = {"terminated": {"exitCode": 0, "message": message}}
    return {
        "metadata": {"name": f"plants-{phase.lower()}", "creationTimestamp": NOW},
        "status": {"phase": phase, "containerStatuses": [cs], **status},
    }


def derive(r: dict[str, Any], catalog, **kw: Any) -> dict[str, Any]:
    args = {"job": None, "pods": [], "quota": None, "progress": None, "problem": None}
    args.update(kw)
    return derive_status(r, training=resolve(r["spec"], catalog), now=NOW, **args)


def conditions(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def test_success_reads_the_output_from_the_termination_message(catalog) -> None:
    files = [{"path": "weights.json", "size": 10, "sha256": "ab" * 32}]
    msg = json.dumps(
        {
            "ok": True,
            "output": {"url": OUT + "/plants/", "files": files},
            "metrics": {"accuracy": 0.9},
        }
    )
    st = derive(
        run(),
        catalog,
        job=job([{"type": "Complete", "status": "True"}], succeeded=1),
        pods=[pod("Succeeded", msg)],
    )
    assert st["phase"] == "Succeeded" and st["reason"] == "Succeeded"
    assert st["output"]["files"] == files and st["output"]["totalBytes"] == 10
    assert st["metrics"] == {"accuracy": 0.9} and st["progress"]["summary"] == "100%"
    assert conditions(st)["Succeeded"] == ("True", "Succeeded")


def test_failures_name_their_cause(catalog) -> None:
    failed = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    st = derive(run(), catalog, job=job(failed, failed=1))
    assert st["reason"] == "DeadlineExceeded" and "60s" in st["conditions"][-1]["message"]
    data = json.dumps({"ok": False, "reason": "DataUnavailable", "message": "HTTP 401"})
    failed = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]
    st = derive(run(), catalog, job=job(failed, failed=1), pods=[pod("Failed", data)])
    assert (st["phase"], st["reason"]) == ("Failed", "DataUnavailable")
    failed = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    st = derive(run(), catalog, job=job(failed, failed=2), pods=[pod("Failed", None)])
    assert st["reason"] == "BackoffLimitExceeded" and st["attempts"] == 2


def test_a_failed_job_waits_for_its_pods_message_before_the_run_is_final(catalog) -> None:
    """Was: the Job controller's Failed condition reached the operator before the pod's update,
    and the run ended for good with the generic PodFailurePolicy instead of the real cause."""
    failed = [
        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
         "lastTransitionTime": NOW}
    ]  # fmt: skip
    st = derive(run(), catalog, job=job(failed, failed=1), pods=[pod("Running")])
    assert (st["phase"], st["reason"]) == ("Running", "Finishing")
    data = json.dumps({"ok": False, "reason": "DataUnavailable", "message": "HTTP 401"})
    st = derive(run(), catalog, job=job(failed, failed=1), pods=[pod("Failed", data)])
    assert (st["phase"], st["reason"]) == ("Failed", "DataUnavailable")
    # A pod that never catches up does not hold the run open for ever.
    failed[0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    st = derive(run(), catalog, job=job(failed, failed=1), pods=[pod("Running")])
    assert (st["phase"], st["reason"]) == ("Failed", "PodFailurePolicy")


def test_a_terminal_status_never_changes_and_a_lost_job_is_not_rerun(catalog) -> None:
    r = run()
    r["status"] = {"phase": "Succeeded", "jobUID": "j-1", "conditions": []}
    assert derive(r, catalog) == r["status"]
    r["status"] = {"phase": "Running", "jobUID": "j-1", "conditions": []}
    st = derive(r, catalog)
    assert (st["phase"], st["reason"]) == ("Failed", "JobLost")


def test_pending_reasons_name_the_missing_resource(catalog) -> None:
    r = run(resources={"gpu": 4})
    sched = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
    st = derive(r, catalog, job=job(active=1), pods=[pod("Pending", conditions=[sched])])
    assert st["reason"] == "Unschedulable" and "4 free GPU(s)" in st["conditions"][-1]["message"]
    pull = {
        "name": CONTAINER,
        "image": "x:1",
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
    }
    st = derive(r, catalog, job=job(active=1), pods=[pod("Pending", containerStatuses=[pull])])
    assert st["reason"] == "ImagePullBackOff"
    quotas = [
        {
            "metadata": {"name": "gpus"},
            "status": {
                "hard": {"requests.nvidia.com/gpu": "4"},
                "used": {"requests.nvidia.com/gpu": "2"},
            },
        }
    ]
    training = resolve(r["spec"], catalog)
    why = quota_block(quotas, training)
    assert why and why.startswith("quota too small: 2 of 4 GPUs in use (ResourceQuota 'gpus'")
    assert "asks for 4" in why
    # Any resource the pod asks for: the quota, the resource, requested, used and allowed.
    cpu_run = {**r, "spec": {**r["spec"], "resources": {"gpu": 0, "cpu": "1500m", "memory": "2Gi"}}}
    cpu_quota = {"metadata": {"name": "team-a"}, "status": {
        "hard": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "10"},
        "used": {"requests.cpu": "3", "requests.memory": "1Gi", "pods": "2"}}}  # fmt: skip
    why_cpu = quota_block([cpu_quota], resolve(cpu_run["spec"], catalog), "lab")
    assert why_cpu and why_cpu.startswith(
        "exceeds ResourceQuota 'team-a': requests.cpu 1500m requested, 3 used of 4."
    ), why_cpu
    assert "kubectl edit resourcequota team-a -n lab" in why_cpu
    roomy = {**cpu_quota, "status": {**cpu_quota["status"], "hard": {"requests.cpu": "8"}}}
    assert quota_block([roomy], resolve(cpu_run["spec"], catalog), "lab") is None
    full = {"metadata": {"name": "count"}, "status": {"hard": {"pods": "2"}, "used": {"pods": "2"}}}
    assert "pods 1 requested, 2 used of 2" in (
        quota_block([full], resolve(cpu_run["spec"], catalog), "lab") or ""
    )
    st = derive(r, catalog, quota=why)
    assert (st["phase"], st["reason"]) == ("Pending", "Unschedulable")
    assert conditions(st)["Created"] == ("False", "Unschedulable")


def test_running_shows_progress_and_suspend(catalog) -> None:
    progress = {
        "percent": 45.0,
        "epoch": 3,
        "epochs": 10,
        "etaSeconds": 125,
        "step": "Training",
        "metrics": {"loss": 0.3},
    }
    st = derive(run(), catalog, job=job(active=1), pods=[pod("Running")], progress=progress)
    assert st["phase"] == "Running" and st["reason"] == "Training"
    assert st["progress"]["summary"] == "45% epoch 3/10 ETA 2m05s"
    assert st["metrics"] == {"loss": 0.3}
    suspended = job(active=0)
    suspended["spec"]["suspend"] = True
    st = derive(run(runPolicy={"suspend": True}), catalog, job=suspended)
    assert st["phase"] == "Suspended" and conditions(st)["Suspended"][0] == "True"
    assert summary({"step": "DataIn"}, "Running") == "DataIn"


def test_args_are_checked_against_the_catalog_declaration(catalog) -> None:
    resolve(run(args={"data_dir": "$(DATA_DIR)", "max_iter": 50, "C": 2})["spec"], catalog)
    for args, words in [
        ({"epochs": 3}, "does not take it"),
        ({"max_iter": "many"}, "integer"),
        ({"bad name": 1}, "not an identifier"),
    ]:
        with pytest.raises(SpecProblem) as err:
            resolve(run(args=args)["spec"], catalog)
        assert err.value.reason == "InvalidArgs" and words in err.value.message
        assert "data_dir" in err.value.message or words != "does not take it"
    r = run(args={"epochs": 3})
    st = derive_status(
        r,
        training=None,
        problem=SpecProblem("InvalidArgs", "x"),
        job=None,
        pods=[],
        quota=None,
        progress=None,
        now=NOW,
    )
    assert (st["phase"], st["reason"]) == ("Failed", "InvalidArgs")


def test_marketplace_command_and_manifest_come_from_the_declared_args(catalog) -> None:
    from deepmarket.catalog.manifests import train_command, trainingrun_manifest
    from deepmarket.cli.training_cmds import build_parser_args_for_test

    module = catalog.get("digits-classifier")
    command = train_command(module)
    assert "--arg 'data_dir=$(DATA_DIR)'" in command and "--arg max_iter=500" in command
    assert trainingrun_manifest(module)["spec"]["args"]["data_dir"] == "$(DATA_DIR)"
    # the command parses with the real CLI into the same args the manifest carries
    args = build_parser_args_for_test(command)
    assert dict(a.split("=", 1) for a in args.arg) == {
        "data_dir": "$(DATA_DIR)",
        "C": "1.0",
        "max_iter": "500",
    }


def test_progress_url_by_cluster_ip_names_the_service() -> None:
    from deepmarket.controller.training.reconciler import service_of_url, with_host

    url = "http://deepmarket-operator-progress.deepmarket-system.svc:8081/progress"
    assert service_of_url(url) == ("deepmarket-system", "deepmarket-operator-progress")
    assert service_of_url("http://op.ns.svc.cluster.local/progress") == ("ns", "op")
    assert service_of_url("http://10.0.0.7:8081/progress") is None
    assert service_of_url("http://operator.example.org/progress") is None
    assert with_host(url, "10.0.0.7") == "http://10.0.0.7:8081/progress"


def test_a_catalogsource_in_the_namespace_serves_spec_module(catalog) -> None:
    """Without --catalog (the in-cluster operator), spec.module comes from the synced catalog
    of a CatalogSource in the run's namespace, as for DeepModules; elsewhere it is missing."""
    from deepmarket.controller.catalogstore import CatalogStore, Synced
    from deepmarket.controller.training.reconciler import TrainingOptions, TrainingReconciler

    store = CatalogStore()
    store.put(Synced("lab", "main", "uid-1", "abc123", catalog))
    r = TrainingReconciler(None, TrainingOptions(), catalog=None, catalogs=store)  # type: ignore[arg-type]
    here = {"metadata": {"name": "t", "namespace": "lab"}}
    elsewhere = {"metadata": {"name": "t", "namespace": "other"}}
    assert r.catalog_for(here) is catalog
    assert r.catalog_for(elsewhere) is None
    spec = {"module": "digits-classifier", "data": {"input": {"url": "https://d/x"},
                                                    "output": {"url": "https://d/y"}}}  # fmt: skip
    assert resolve(spec, r.catalog_for(here)).image == "ghcr.io/deepmarket/digits-classifier:1.0.0"
    with pytest.raises(SpecProblem) as problem:
        resolve(spec, r.catalog_for(elsewhere))
    assert problem.value.reason == "CatalogUnavailable"
