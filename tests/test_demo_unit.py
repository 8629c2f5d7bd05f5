"""The demo's decisions (pure functions) and its CLI's usage errors."""

from pathlib import Path

import pytest

from deepmarket import demo
from deepmarket.catalog import load_catalog
from deepmarket.cli import main

ROOT = Path(__file__).resolve().parents[1]
BASE = "http://127.0.0.1:5000"


def _dm(name, ready=None, reason=None, url=None, replicas=(1, 1), message=""):
    status = {}
    if ready is not None:
        status = {
            "replicas": replicas[1],
            "readyReplicas": replicas[0],
            "conditions": [
                {"type": "Ready", "status": ready, "reason": reason, "message": message}
            ],
        }
        if url:
            status["externalURL"] = url
    return {"metadata": {"name": name}, "status": status}


def test_deploys_exactly_the_modules_marked_deploy_true_in_order():
    catalog = load_catalog(ROOT)
    wanted = [m.id for m in catalog if m.deploy]
    assert [m.id for m in demo.deployed(catalog)] == wanted
    assert demo.TRY_MODULE in wanted
    doc = demo.apply_list(demo.deployed(catalog), "deepmarket")
    assert doc["items"][0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "deepmarket",
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }
    dms = doc["items"][1:]
    assert [d["metadata"]["name"] for d in dms] == wanted
    assert {d["kind"] for d in dms} == {"DeepModule"}
    assert {d["metadata"]["namespace"] for d in dms} == {"deepmarket"}


def test_module_base_follows_the_try_it_scheme():
    assert demo.module_base(BASE, "digits") == f"{BASE}/digits/"
    assert demo.module_base(BASE + "/", "digits") == f"{BASE}/digits/"
    assert demo.module_base("http://{id}.localhost:5000", "d") == "http://d.localhost:5000/"


def test_rows_summarise_status_and_only_this_runs_url_counts_as_settled():
    rows = demo.status_rows(
        [
            _dm("a", "True", "Available", f"{BASE}/a/"),
            _dm("b", "False", "Unschedulable", replicas=(0, 1)),
            _dm("c"),
            _dm("d", "True", "Available", "http://127.0.0.1:1/d/"),  # an earlier run's status
        ]
    )
    assert [(r.module, r.ready, r.replicas) for r in rows] == [
        ("a", "True", "1/1"),
        ("b", "False (Unschedulable)", "0/1"),
        ("c", "-", "0/0"),
        ("d", "True", "1/1"),
    ]
    assert [demo.settled(r, BASE) for r in rows] == [True, False, False, False]
    table = demo.format_table(rows).splitlines()
    assert table[0].split() == ["MODULE", "READY", "REPLICAS", "RUNS", "ON", "URL"]
    assert table[1].split()[3] == "simulated"
    assert table[1].index("True") == table[0].index("READY")


def test_not_ready_detail_names_each_module_and_why():
    items = [
        _dm("a", "True", "Available", f"{BASE}/a/"),
        _dm("b", "False", "Unschedulable", message="Insufficient nvidia.com/gpu"),
        _dm("c"),
    ]
    detail = demo.not_ready_detail(items, ["a", "b", "c", "d"])
    assert detail == (
        "b: Unschedulable: Insufficient nvidia.com/gpu; "
        "c: no status yet (is the operator running?); d: not found"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site-port", "70000"], "--site-port 70000: expected 0-65535"),
        (["--site-port", "5000", "--module-port", "5000"], "must differ"),
    ],
)
def test_bad_ports_are_usage_errors(capsys, args, message):
    assert main(["demo", *args]) == 2
    assert message in capsys.readouterr().err


def test_modules_with_a_local_image_are_placed_on_the_real_node_and_the_table_says_so():
    from deepmarket.catalog import load_catalog
    from deepmarket.devcluster import nodeconfig

    catalog = load_catalog(ROOT)
    modules = demo.deployed(catalog)
    real = demo.real_modules(modules, {"ghcr.io/deepmarket/digits-classifier:1.0.0"})
    assert real == {"digits-classifier"}
    items = demo.apply_list(modules, "ns", real)["items"]
    placed = {i["metadata"]["name"]: i["spec"].get("podTemplate") for i in items[1:]}
    assert placed.pop("digits-classifier") == {"spec": nodeconfig.placement()}
    assert set(placed.values()) == {None}
    rows = demo.status_rows([_dm("digits-classifier", "True", "Available", f"{BASE}/d/")], real)
    assert rows[0].runs == "real node"
    assert "real node" in demo.format_table(rows).splitlines()[1]


def test_a_ready_status_of_an_older_generation_is_not_settled():
    # the real node's placement bumps the generation; the simulated pods' Ready still stands
    item = _dm("digits-classifier", "True", "Available", f"{BASE}/digits-classifier/")
    item["metadata"]["generation"] = 2
    item["status"]["observedGeneration"] = 1
    assert not demo.settled(demo.status_rows([item])[0], BASE)
    item["status"]["observedGeneration"] = 2
    assert demo.settled(demo.status_rows([item])[0], BASE)


def _endpoint(node, ready=True):
    return {"addresses": ["10.85.0.9"], "nodeName": node, "conditions": {"ready": ready}}


@pytest.mark.parametrize(
    ("endpoints", "only"),
    [
        ([], False),  # no slice yet, or an empty one: nothing answers
        ([[_endpoint("real-node-1")]], True),
        ([[_endpoint("real-node-1"), _endpoint("kwok-node-0")]], False),  # the simulated pod
        ([[_endpoint("real-node-1")], [_endpoint("kwok-node-0", ready=False)]], False),
        ([[_endpoint("real-node-1", ready=False)]], False),
    ],
)
def test_the_service_reaches_the_real_pod_only_once_no_other_endpoint_is_listed(endpoints, only):
    slices = [{"endpoints": e} for e in endpoints]
    assert demo.endpoints_only_on(slices, "real-node-1") is only


def test_the_in_cluster_operator_runs_the_demo_where_dev_up_installed_it():
    installed = {"real_node": True, "operator": "in-cluster"}
    assert demo.host_operator_why(installed, checkout=True) is None
    assert "no real node" in demo.host_operator_why({"real_node": False}, checkout=True)
    assert "could not install" in demo.host_operator_why({"real_node": True}, checkout=True)
    # Not a checkout (an unpacked archive): no git repository for its pods to fetch.
    assert "not a git checkout" in demo.host_operator_why(installed, checkout=False)
    assert "no real node" in demo.host_operator_why(None, checkout=True)


def test_pods_reach_the_host_at_their_bridge_gateway():
    from deepmarket.devcluster.realnode import gateway

    assert gateway("10.85.0.0/24") == "10.85.0.1"
    assert gateway("10.91.3.0/24") == "10.91.3.1"


def test_the_in_cluster_operator_settles_without_an_external_url():
    item = {
        "metadata": {"name": "m", "generation": 2},
        "status": {
            "observedGeneration": 2,
            "url": "http://m.deepmarket.svc.cluster.local/",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    row = demo.status_rows([item])[0]
    assert not demo.settled(row, BASE)  # a host operator's run sets its own externalURL
    assert demo.settled(row, BASE, external=False)
    item["status"]["observedGeneration"] = 1
    assert not demo.settled(demo.status_rows([item])[0], BASE, external=False)
