"""Observed Deployment + pods → DeepModule status, and which writes a reconcile makes (pure)."""

from __future__ import annotations

from deepmarket.controller.compare import with_hash
from deepmarket.controller.deepmodule.builders import desired_children
from deepmarket.controller.deepmodule.reconciler import plan_writes
from deepmarket.controller.deepmodule.resolve import SpecProblem, resolve
from deepmarket.controller.deepmodule.status import derive_status, status_changed
from deepmarket.controller.options import Options

OPTS = Options(ingress_base="https://models.example.org")
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def dm(spec: dict | None = None, generation: int = 1, status: dict | None = None) -> dict:
    obj = {
        "metadata": {"name": "m", "namespace": "lab", "uid": "u", "generation": generation},
        "spec": spec or {"image": "a/b:1", "resources": {"gpu": 1}},
    }
    if status:
        obj["status"] = status
    return obj


def deployment(ready: int, wanted: int = 1, updated: int | None = None, conditions=()) -> dict:
    up = wanted if updated is None else updated
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": wanted},
        "status": {
            "observedGeneration": 2,
            "replicas": wanted,
            "updatedReplicas": up,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": list(conditions),
        },
    }


def status_of(obj: dict, dep: dict | None, pods=(), now: str = T0) -> dict:
    rt = resolve(obj["spec"], None)
    plan = desired_children(obj, rt, OPTS, knative=False)
    return derive_status(
        obj, options=OPTS, now=now, runtime=rt, plan=plan, deployment=dep, pods=pods
    )


def conds(status: dict) -> dict:
    return {c["type"]: c for c in status["conditions"]}


def test_ready_when_every_wanted_replica_is_ready():
    s = status_of(dm(), deployment(ready=1))
    c = conds(s)
    assert c["Ready"]["status"] == "True" and c["Ready"]["reason"] == "Available"
    assert c["Progressing"]["status"] == "False" and c["Degraded"]["status"] == "False"
    assert s["url"] == "http://m.lab.svc.cluster.local/"
    assert s["externalURL"] == "https://models.example.org/m/"
    assert s["readyReplicas"] == 1 and s["gpus"] == 1 and s["observedGeneration"] == 1
    assert all(x["observedGeneration"] == 1 for x in s["conditions"])


def test_external_url_follows_the_marketplace_scheme():
    from deepmarket.controller.deepmodule.builders import external_url

    assert external_url("m", "lab", Options(ingress_base="https://x.org/")) == "https://x.org/m/"
    templ = Options(ingress_base="https://{id}.{namespace}.models.org")
    assert external_url("m", "lab", templ) == "https://m.lab.models.org/"
    assert external_url("m", "lab", Options()) is None


def test_before_the_deployment_exists_and_right_after_the_status_is_the_same():
    # So the watch events in between cost no status write.
    assert status_of(dm(), None) == status_of(dm(), {"spec": {"replicas": 1}, "status": {}})
    c = conds(status_of(dm(), None))
    assert c["Ready"]["reason"] == "Deploying" and c["Progressing"]["status"] == "True"


def test_unschedulable_gpu_names_the_shortage():
    pod = {
        "metadata": {"name": "m-abc"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
    c = conds(status_of(dm(), deployment(ready=0), [pod]))
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in c["Ready"]["message"]
    assert c["Degraded"]["status"] == "True"


def test_image_pull_backoff_and_oom_are_degraded():
    def waiting(reason: str, last: dict | None = None) -> dict:
        cs = {"name": "deepaas", "state": {"waiting": {"reason": reason, "message": "boom"}}}
        if last:
            cs["lastState"] = {"terminated": last}
        return {"metadata": {"name": "p"}, "status": {"containerStatuses": [cs]}}

    c = conds(status_of(dm(), deployment(ready=0), [waiting("ImagePullBackOff")]))
    assert c["Ready"]["reason"] == "ImagePullBackOff" and c["Degraded"]["status"] == "True"
    c = conds(
        status_of(dm(), deployment(ready=0), [waiting("CrashLoopBackOff", {"reason": "OOMKilled"})])
    )
    assert c["Degraded"]["reason"] == "OOMKilled"
    # A pod merely starting is not a problem.
    c = conds(status_of(dm(), deployment(ready=0), [waiting("ContainerCreating")]))
    assert c["Degraded"]["status"] == "False" and c["Ready"]["reason"] == "Deploying"


def test_rollout_in_progress_is_progressing():
    c = conds(status_of(dm(), deployment(ready=1, wanted=1, updated=0)))
    assert c["Progressing"]["status"] == "True"


def test_autoscaled_module_waits_for_the_hpa_to_reach_min_replicas():
    obj = dm({"image": "a/b:1", "autoscaling": {"minReplicas": 2, "maxReplicas": 4}})
    c = conds(status_of(obj, deployment(ready=1, wanted=1)))
    assert c["Ready"]["status"] == "False" and c["Ready"]["message"] == "1/2 replicas ready"
    assert c["Progressing"]["status"] == "True"


def test_transition_time_kept_while_status_unchanged():
    first = status_of(dm(), deployment(ready=1), now=T0)
    again = status_of(dm(status=first), deployment(ready=1), now=T1)
    assert again == first and not status_changed(first, again)
    lost = status_of(dm(status=first), deployment(ready=0), now=T1)
    assert conds(lost)["Ready"]["lastTransitionTime"] == T1
    assert conds(lost)["Degraded"]["lastTransitionTime"] == T0  # Degraded did not change
    assert status_changed(first, lost)


def test_spec_problem_is_ready_false_with_its_reason():
    s = derive_status(dm(), options=OPTS, now=T0, problem=SpecProblem("ModuleNotFound", "no x"))
    c = conds(s)
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "ModuleNotFound"
    assert c["Degraded"]["status"] == "True"


def test_scale_to_zero_condition():
    obj = dm({"image": "a/b:1", "autoscaling": {"minReplicas": 0, "maxReplicas": 2}})
    c = conds(status_of(obj, deployment(ready=1)))
    assert c["ScaleToZero"]["status"] == "False"
    assert c["ScaleToZero"]["reason"] == "KnativeNotInstalled"


def test_plan_writes_only_what_differs_and_deletes_unwanted_owned_children():
    obj = dm({"image": "a/b:1", "replicas": 1})
    rt = resolve(obj["spec"], None)
    plan = desired_children(obj, rt, OPTS, knative=False)
    deploy, svc = (with_hash(o) for o in plan.objects)
    hpa = {"metadata": {"name": "m", "namespace": "lab", "uid": "h",
                        "ownerReferences": [{"uid": "u", "controller": True}]}}  # fmt: skip
    observed = {
        ("apps/v1", "Deployment"): deploy,
        ("v1", "Service"): None,
        ("autoscaling/v2", "HorizontalPodAutoscaler"): hpa,
    }
    writes = plan_writes(plan, observed, "u")
    assert [(w.verb, w.kind[1]) for w in writes] == [
        ("apply", "Service"),
        ("delete", "HorizontalPodAutoscaler"),
    ]
    observed[("v1", "Service")] = svc
    observed[("autoscaling/v2", "HorizontalPodAutoscaler")] = None
    assert plan_writes(plan, observed, "u") == []
    # A child someone else owns is never deleted.
    hpa["metadata"]["ownerReferences"] = [{"uid": "other", "controller": True}]
    observed[("autoscaling/v2", "HorizontalPodAutoscaler")] = hpa
    assert plan_writes(plan, observed, "u") == []
