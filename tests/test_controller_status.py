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
    assert (
        c["Ready"]["status"] == "False"
        and c["Ready"]["message"] == "1 available, at least 2 wanted"
    )
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


# --- truthful status (issue 17, case 8) ---------------------------------------------------------


def rolling(available: int, updated: int, total: int, wanted: int, observed: int = 2) -> dict:
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": wanted},
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
        },
    }


def test_image_change_is_not_ready_while_old_pods_serve_and_status_image_is_what_runs():
    before = status_of(dm({"image": "a/b:1"}), rolling(1, 1, 1, 1))
    assert conds(before)["Ready"]["status"] == "True" and before["image"] == "a/b:1"
    changed = dm({"image": "a/b:2"}, generation=2, status=before)
    # The apply's answer: the Deployment controller has not seen generation 2 yet.
    s = status_of(changed, rolling(1, 1, 1, 1, observed=1))
    assert conds(s)["Ready"]["status"] == "False" and s["image"] == "a/b:1"
    # Seen, new pod surging, old pod still serving.
    s = status_of(changed, rolling(1, 1, 2, 1))
    assert conds(s)["Ready"]["status"] == "False" and s["image"] == "a/b:1"
    assert conds(s)["Progressing"]["status"] == "True"
    # Old pod gone, new one available.
    s = status_of(changed, rolling(1, 1, 1, 1))
    assert conds(s)["Ready"]["status"] == "True" and s["image"] == "a/b:2"


def test_an_autoscaler_scale_up_never_flips_ready():
    obj = dm({"image": "a/b:1", "autoscaling": {"minReplicas": 2, "maxReplicas": 8}})
    for available, total in [(2, 2), (2, 5), (3, 5), (5, 5)]:
        s = status_of(obj, rolling(available, total, total, total))
        assert conds(s)["Ready"]["status"] == "True", (available, total)


def test_a_pending_pod_of_a_scale_up_is_not_degraded_but_below_the_minimum_it_is():
    obj = dm({"image": "a/b:1", "autoscaling": {"minReplicas": 1, "maxReplicas": 4}})
    pending = {
        "metadata": {"name": "m-2"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ]
        },
    }
    s = status_of(obj, rolling(1, 2, 2, 2), pods=[pending])
    assert conds(s)["Ready"]["status"] == "True" and conds(s)["Degraded"]["status"] == "False"
    s = status_of(obj, rolling(0, 1, 1, 1), pods=[pending])
    assert conds(s)["Degraded"]["reason"] == "Unschedulable"


def test_a_crash_loop_reads_the_same_through_its_whole_cycle():
    def pod(state: dict, restarts: int, last: dict | None) -> dict:
        cs = {"name": "deepaas", "ready": False, "restartCount": restarts, "state": state}
        if last:
            cs["lastState"] = {"terminated": last}
        return {"metadata": {"name": "m-1"}, "status": {"containerStatuses": [cs]}}

    died = {"exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T00:00:00Z"}
    cycle = [
        pod({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}, 1, died),
        pod({"running": {"startedAt": "2026-01-01T00:00:10Z"}}, 2, died),
        pod({"terminated": died}, 2, died),
        pod({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}, 2, died),
    ]
    degraded = {
        json_key(conds(status_of(dm(), rolling(0, 1, 1, 1), pods=[p]))["Degraded"]) for p in cycle
    }
    assert len(degraded) == 1, degraded
    (only,) = degraded
    assert "CrashLoopBackOff" in only and "exit code 1" in only


def test_image_pull_errors_alternating_read_the_same():
    def pod(reason: str, message: str) -> dict:
        cs = {"name": "deepaas", "image": "a/b:1", "restartCount": 0,
              "state": {"waiting": {"reason": reason, "message": message}}}  # fmt: skip
        return {"metadata": {"name": "m-1"}, "status": {"containerStatuses": [cs]}}

    a = status_of(dm(), rolling(0, 1, 1, 1), pods=[pod("ErrImagePull", "rpc error: 404")])
    b = status_of(dm(), rolling(0, 1, 1, 1), pods=[pod("ImagePullBackOff", "Back-off pulling")])
    assert conds(a)["Degraded"] == conds(b)["Degraded"]
    assert conds(a)["Degraded"]["reason"] == "ImagePullBackOff"


def json_key(cond: dict) -> str:
    return f"{cond['status']} {cond['reason']} {cond['message']}"


def test_a_scale_alone_bumping_the_deployments_generation_keeps_ready():
    obj = dm({"image": "a/b:1", "autoscaling": {"minReplicas": 1, "maxReplicas": 4}})
    scaled = rolling(1, 1, 1, 3, observed=2)
    scaled["metadata"]["generation"] = 3  # the HPA's /scale write; not yet observed
    rt = resolve(obj["spec"], None)
    plan = desired_children(obj, rt, OPTS, knative=False)

    def ready(applied):
        s = derive_status(
            obj,
            options=OPTS,
            now=T0,
            runtime=rt,
            plan=plan,
            deployment=scaled,
            applied_generation=applied,
        )
        return conds(s)["Ready"]["status"]

    assert ready(2) == "True"  # our last write made generation 2, which is rolled out
    assert ready(None) == "False"  # unknown (after a restart): only the current one counts
