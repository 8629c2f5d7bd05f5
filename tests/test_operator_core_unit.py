"""Ownership, hand-edit reverts, the replicas hand-over and leader election's clock (pure)."""

from __future__ import annotations

from deepmarket.controller.compare import revert_patch
from deepmarket.controller.deepmodule.builders import desired_children
from deepmarket.controller.deepmodule.reconciler import (
    OWN_MANAGERS,
    Conflict,
    classify,
    handover,
    plan_writes,
    trim,
)
from deepmarket.controller.deepmodule.resolve import resolve
from deepmarket.controller.kube import ApiError
from deepmarket.controller.options import Options
from deepmarket.controller.runner import Election, Fence, LeaderElector

DEPLOY, SVC = ("apps/v1", "Deployment"), ("v1", "Service")
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")


def dm(spec: dict, uid: str = "u1") -> dict:
    return {
        "metadata": {"name": "web", "namespace": "lab", "uid": uid, "generation": 1},
        "spec": spec,
    }


def owned(obj: dict, uid: str = "u1") -> dict:
    ref = {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "DeepModule",
        "name": "web",
        "uid": uid,
        "controller": True,
    }
    meta = {**obj["metadata"], "uid": f"child-{uid}", "ownerReferences": [ref]}
    return {**obj, "metadata": meta}


def plan_for(spec: dict):
    obj = dm(spec)
    return obj, desired_children(obj, resolve(spec, None), Options(), knative=False)


def test_only_a_child_whose_controller_reference_is_this_uid_is_ours():
    _, plan = plan_for({"image": "a/b:1"})
    mine = owned(plan.objects[0])
    stranger = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "lab", "uid": "x"},
        "spec": {},
    }
    old_self = owned(plan.objects[1], uid="u0")  # a deleted DeepModule of the same name
    ours, others = classify({DEPLOY: mine, SVC: stranger}, "u1")
    assert ours[DEPLOY] == mine and ours[SVC] is None and others == [(SVC, stranger)]
    c = Conflict(SVC, "web", None)
    assert not c.stale_self and "Service 'web' already exists" in c.message()
    assert "never adopts or overwrites" in c.message()
    ours, others = classify({SVC: old_self}, "u1")
    assert Conflict(SVC, "web", old_self["metadata"]["ownerReferences"][0]).stale_self
    # Never a delete of what is not ours, even when the plan no longer wants that kind.
    assert [w.verb for w in plan_writes(plan, {HPA: stranger}, "u1")] == ["apply", "apply"]


def test_hand_edits_by_other_managers_are_removed_and_ours_and_tolerated_ones_stay():
    _, plan = plan_for({"image": "a/b:1", "env": [{"name": "A", "value": "1"}]})
    want = plan.objects[0]
    live = owned(want)
    spec = live["spec"] = {**want["spec"], "replicas": 3}
    pod = spec["template"] = {**want["spec"]["template"]}
    pod["metadata"] = {**pod["metadata"], "annotations": {"kubectl.kubernetes.io/restartedAt": "x"}}
    pspec = pod["spec"] = {**pod["spec"], "hostNetwork": True}
    main = {**pspec["containers"][0]}
    main["env"] = [*main["env"], {"name": "EXTRA", "value": "1"}]
    pspec["containers"] = [main, {"name": "sidecar", "image": "evil:1"}]
    live["metadata"]["managedFields"] = [
        {"manager": "deepmarket", "operation": "Apply", "fieldsV1": {"f:spec": {"f:x": {}}}},
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "subresource": "scale",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
        {
            "manager": "kubectl-rollout",
            "operation": "Update",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/restartedAt": {}}}
                    }
                }
            },
        },
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {
                            "f:hostNetwork": {},
                            "f:containers": {
                                'k:{"name":"sidecar"}': {".": {}, "f:image": {}, "f:name": {}},
                                'k:{"name":"deepaas"}': {
                                    "f:env": {
                                        'k:{"name":"EXTRA"}': {".": {}, "f:value": {}},
                                        'k:{"name":"A"}': {"f:value": {}},
                                    }
                                },
                            },
                        }
                    }
                }
            },
        },
    ]
    ops, paths = revert_patch(trim(live), want, OWN_MANAGERS)
    removed = [op["path"] for op in ops if op["op"] == "remove"]
    assert sorted(removed) == [
        "/spec/template/spec/containers/0/env/1",  # EXTRA, after our A
        "/spec/template/spec/containers/1",  # the sidecar
        "/spec/template/spec/hostNetwork",
    ]
    # Every removal is guarded by a test of what it removes.
    for n, op in enumerate(ops):
        if op["op"] == "remove":
            assert ops[n - 1] == {"op": "test", "path": op["path"], "value": ops[n - 1]["value"]}
    assert any("hostNetwork" in p for p in paths)
    # The revert comes with the plan, before the apply of what differs.
    verbs = [w.verb for w in plan_writes(plan, {DEPLOY: trim(live)}, "u1")]
    assert verbs[0] == "revert"


def test_fixed_replicas_to_autoscaling_hands_the_count_over_first():
    _, plan = plan_for({"image": "a/b:1", "autoscaling": {"minReplicas": 3, "maxReplicas": 8}})
    running = owned(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "lab"},
            "spec": {"replicas": 4},
        }
    )
    hand = handover(plan, {DEPLOY: running, HPA: None}, floor=3)
    assert hand["spec"] == {"replicas": 4} and hand["metadata"]["uid"] == "child-u1"
    running["spec"]["replicas"] = 1
    assert handover(plan, {DEPLOY: running, HPA: None}, floor=3)["spec"] == {"replicas": 3}
    # Not again once the HPA exists, and not for a module created autoscaled.
    assert handover(plan, {DEPLOY: running, HPA: {"metadata": {}}}, floor=3) is None
    assert handover(plan, {DEPLOY: None, HPA: None}, floor=3) is None


class LeaseApi:
    """A Lease endpoint in memory, with the apiserver's optimistic concurrency."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.rv = 0

    def request(self, method, path, body=None, **_):
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, "not found")
            return {**self.lease, "spec": dict(self.lease["spec"])}
        if method == "POST":
            if self.lease is not None:
                raise ApiError(409, "exists")
            self.rv += 1
            self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}
            return self.lease
        if method == "PUT":
            if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
                raise ApiError(409, "conflict")
            self.rv += 1
            self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}
            return self.lease
        raise AssertionError(method)


def test_a_follower_with_a_skewed_clock_waits_a_whole_lease_after_it_last_saw_a_change():
    api = LeaseApi()
    e = Election(lease_duration=15, renew_deadline=10, retry_period=2)
    t = {"a": 0.0, "b": 0.0}
    a = LeaderElector(
        api,
        "ns",
        "a",
        e,
        monotonic=lambda: t["a"],
        wall=lambda: f"2026-01-01T00:00:{t['a']:09.6f}Z",
    )
    # b's wall clock is an hour ahead: renewTime says a's lease expired long ago.
    b = LeaderElector(
        api, "ns", "b", e, monotonic=lambda: t["b"], wall=lambda: "2026-01-01T01:00:00.000000Z"
    )
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    for step in range(1, 20):  # a renews every 2 s; b never takes over
        t["a"] += 2
        t["b"] += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew(), step
    # a dies: b takes over only a whole lease after the last change it observed.
    t["b"] += 14.9
    assert not b.try_acquire_or_renew()
    t["b"] += 0.2
    assert b.try_acquire_or_renew()
    assert api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1


def test_release_lets_a_follower_in_at_once_and_only_the_holder_releases():
    api = LeaseApi()
    e = Election()
    a = LeaderElector(api, "ns", "a", e, monotonic=lambda: 0.0)
    b = LeaderElector(api, "ns", "b", e, monotonic=lambda: 0.0)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert a.release()
    assert b.try_acquire_or_renew()
    assert not a.release()  # not ours any more: left alone


def test_the_fence_closes_at_the_renew_deadline_before_the_lease_can_expire():
    now = [100.0]
    fence = Fence(10.0, monotonic=lambda: now[0])
    assert not fence.open()
    fence.renewed(attempt_started=100.0)
    now[0] = 109.9
    assert fence.open()
    now[0] = 110.0
    assert not fence.open()
    assert Election(15, 10, 2).problems() == []
    assert Election(10, 10, 2).problems() and Election(15, 2, 2).problems()


def test_an_apply_to_our_child_carries_its_uid_as_a_precondition():
    _, plan = plan_for({"image": "a/b:2"})
    ours = owned(plan_for({"image": "a/b:1"})[1].objects[0])
    (apply_deploy, apply_svc) = plan_writes(plan, {DEPLOY: ours}, "u1")
    assert apply_deploy.obj["metadata"]["uid"] == "child-u1"
    assert "uid" not in apply_svc.obj["metadata"]  # not created yet: nothing to pin
