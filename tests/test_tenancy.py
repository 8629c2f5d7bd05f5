"""Team quotas and the namespaces deepmarket creates (pure parts; the cluster half is in
tests/test_admission_cluster.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deepmarket.cli import main
from deepmarket.controller.tenancy import (
    RESTRICTED_LABELS,
    build_quota,
    describe_quota,
    gpu_consumers,
    parse_quota_exceeded,
    quota_message,
)
from deepmarket.demo import namespace_manifest

ROOT = Path(__file__).resolve().parents[1]
# Verbatim from a ReplicaSet's ReplicaFailure condition on the test cluster (v1.37.2).
REFUSAL = (
    'pods "gpu-c-7d9c6b5f4-x2x9k" is forbidden: exceeded quota: deepmarket-quota, '
    "requested: requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=2, "
    "limited: requests.nvidia.com/gpu=2"
)


def _pod(name: str, gpus: int, *, labels: dict | None = None, phase: str = "Running", owner=None):
    meta: dict = {"name": name, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    res = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "resources": res}]},
            "status": {"phase": phase}}  # fmt: skip


def _dm_pod(name: str, module: str, gpus: int, **kw):
    labels = {
        "app.kubernetes.io/managed-by": "deepmarket",
        "app.kubernetes.io/instance": module,
        "app.kubernetes.io/component": "inference",
    }
    return _pod(name, gpus, labels=labels, **kw)


def test_quota_caps_gpus_and_optionally_counts():
    q = build_quota("team-a", gpus=2, deepmodules=5)
    assert q["kind"] == "ResourceQuota"
    assert q["metadata"] == {
        "name": "deepmarket-quota",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/part-of": "deepmarket"},
    }
    assert q["spec"]["hard"] == {
        "requests.nvidia.com/gpu": "2",
        "count/deepmodules.deepmarket.dev": "5",
    }
    assert build_quota("t", gpus=0, trainingruns=1)["spec"]["hard"] == {
        "requests.nvidia.com/gpu": "0",
        "count/trainingruns.deepmarket.dev": "1",
    }


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"namespace": "Team_A", "gpus": 1}, "not a namespace name"),
        ({"namespace": "t", "gpus": -1}, "--gpus must be 0 or more"),
        ({"namespace": "t", "gpus": 1, "deepmodules": -2}, "--deepmodules must be 0 or more"),
    ],
)
def test_quota_refuses_bad_values(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        build_quota(**kwargs)


def test_describe_quota_shows_usage_once_computed():
    q = build_quota("t", gpus=2, deepmodules=3)
    assert describe_quota(q) == [
        "count/deepmodules.deepmarket.dev: limit 3",
        "requests.nvidia.com/gpu: limit 2",
    ]
    q["status"] = {"used": {"requests.nvidia.com/gpu": "1"}}
    assert "requests.nvidia.com/gpu: 1 used of 2" in describe_quota(q)


def test_cli_refuses_bad_values_in_one_line(capsys):
    assert main(["admin", "quota", "Bad_Name", "--gpus", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepmarket: error: 'Bad_Name' is not a namespace name")
    assert "\n" not in err
    assert main(["admin", "quota", "team", "--gpus", "-3"]) == 2
    assert "--gpus must be 0 or more" in capsys.readouterr().err


def test_parse_quota_refusal():
    got = parse_quota_exceeded(REFUSAL)
    assert got is not None
    assert got.quota == "deepmarket-quota"
    assert got.requested == {"requests.nvidia.com/gpu": "1"}
    assert got.used == {"requests.nvidia.com/gpu": "2"}
    assert got.limited == {"requests.nvidia.com/gpu": "2"}
    several = parse_quota_exceeded(
        "exceeded quota: q, requested: requests.cpu=1,requests.nvidia.com/gpu=1, "
        "used: requests.cpu=3,requests.nvidia.com/gpu=0, limited: requests.cpu=4,"
        "requests.nvidia.com/gpu=8"
    )
    assert several is not None
    assert several.used == {"requests.cpu": "3", "requests.nvidia.com/gpu": "0"}
    assert parse_quota_exceeded('pods "x" is forbidden: error looking up service account') is None
    assert parse_quota_exceeded("") is None


def test_gpu_consumers_name_modules_and_skip_finished_pods():
    pods = [
        _dm_pod("a-1", "a", 1),
        _dm_pod("a-2", "a", 1),
        _dm_pod("b-1", "b", 2),
        _dm_pod("cpu-1", "cpu", 0),
        _dm_pod("done", "old", 4, phase="Succeeded"),
        _pod("train-x", 1, owner=("Job", "train")),
        _pod("bare", 1),
    ]
    assert gpu_consumers(pods) == {
        "DeepModule a": 2,
        "DeepModule b": 2,
        "Job train": 1,
        "Pod bare": 1,
    }


def test_quota_message_names_numbers_users_and_the_fix():
    exceeded = parse_quota_exceeded(REFUSAL)
    assert exceeded is not None
    msg = quota_message(exceeded, "team-a", {"DeepModule gpu-b": 1, "DeepModule gpu-a": 1})
    assert msg.startswith(
        "quota exhausted: 2 of 2 GPUs in use by DeepModule gpu-a (1), DeepModule gpu-b (1); "
    )
    assert "ResourceQuota deepmarket-quota in namespace team-a" in msg
    assert "deepmarket admin quota team-a --gpus N" in msg
    # Stable across retries: the refused pod's random name never appears.
    assert "x2x9k" not in msg
    assert quota_message(exceeded, "team-a").startswith(
        "quota exhausted: 2 of 2 GPUs in use; a replica needs 1 more"
    )
    many = {f"DeepModule m{i}": 1 for i in range(8)}
    assert "3 more;" in quota_message(exceeded, "t", many)


def test_quota_message_for_other_resources():
    exceeded = parse_quota_exceeded(
        "exceeded quota: small, requested: requests.cpu=2, used: requests.cpu=3, "
        "limited: requests.cpu=4"
    )
    assert exceeded is not None
    assert quota_message(exceeded, "t") == (
        "quota exhausted: requests.cpu 3 of 4 in use (ResourceQuota small in namespace t): "
        "free some, or ask an admin to raise it"
    )


def test_demo_namespace_enforces_restricted_pod_security():
    labels = namespace_manifest("deepmarket")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels == RESTRICTED_LABELS


def test_kustomization_installs_every_policy():
    kustomization = yaml.safe_load((ROOT / "controller" / "kustomization.yaml").read_text())
    shipped = {f"policies/{p.name}" for p in (ROOT / "controller" / "policies").glob("*.yaml")}
    assert shipped
    assert shipped <= set(kustomization["resources"])
    for path in shipped:
        docs = list(yaml.safe_load_all((ROOT / "controller" / path).read_text()))
        policies = {d["metadata"]["name"] for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
        bound = {
            d["spec"]["policyName"] for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"
        }
        assert policies == bound, f"{path}: every policy needs its binding"
        assert all(
            d["spec"].get("failurePolicy") == "Fail"
            for d in docs
            if d["kind"] == "ValidatingAdmissionPolicy"
        ), f"{path}: a policy that fails open protects nothing"


def test_deepmodule_status_says_quota_exhausted_instead_of_failed_create():
    from deepmarket.controller.deepmodule.builders import desired_children
    from deepmarket.controller.deepmodule.resolve import resolve
    from deepmarket.controller.deepmodule.status import derive_status
    from deepmarket.controller.options import Options

    dm = {
        "metadata": {"name": "gpu-c", "namespace": "team-a", "uid": "u", "generation": 1},
        "spec": {"image": "a/b:1", "resources": {"gpu": 1}},
    }
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
               "message": REFUSAL}  # fmt: skip
    dep = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 0, "conditions": [failure]},
    }
    rt = resolve(dm["spec"], None)
    plan = desired_children(dm, rt, Options(), knative=False)

    def ready(users, message=REFUSAL):
        failure["message"] = message
        status = derive_status(dm, options=Options(), now="2026-01-01T00:00:00Z", runtime=rt,
                               plan=plan, deployment=dep, gpu_users=users)  # fmt: skip
        return {c["type"]: c for c in status["conditions"]}["Ready"]

    got = ready({"DeepModule gpu-a": 1, "DeepModule gpu-b": 1})
    assert got["status"] == "False" and got["reason"] == "QuotaExhausted"
    assert got["message"].startswith(
        "quota exhausted: 2 of 2 GPUs in use by DeepModule gpu-a (1), DeepModule gpu-b (1); "
    )
    # Another retry (another random pod name) gives the same status: no extra write.
    assert ready(None)["message"] == ready(None, REFUSAL.replace("x2x9k", "q7w8e"))["message"]
    # Other FailedCreate causes keep their own reason and message.
    other = 'pods "x" is forbidden: error looking up service account team-a/runner'
    kept = ready(None, other)
    assert (kept["reason"], kept["message"]) == ("FailedCreate", other)


def test_gpu_quota_head_says_exhausted_only_when_nothing_is_left():
    from deepmarket.controller.tenancy import gpu_quota_head

    assert gpu_quota_head(2, 2) == "quota exhausted: 2 of 2 GPUs in use"
    assert gpu_quota_head("1", "2") == "quota too small: 1 of 2 GPUs in use"
    assert gpu_quota_head("?", "2") == "quota exhausted: ? of 2 GPUs in use"
