"""The operator's only I/O: a thin JSON client over the Kubernetes API (imperative shell).

Requests go through the `kubernetes` client's configured connection (kubeconfig or in-cluster
credentials) but skip its model classes: objects stay plain dicts, the form the pure builders
produce and compare, and deserialising 1,000 Deployments into models would dominate CPU.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from deepmarket.controller import DEEPMODULE_API, FIELD_MANAGER

USER_AGENT = "deepmarket-operator"

# (apiVersion, kind) → plural, for every kind the operator reads or writes.
PLURALS = {
    ("apps/v1", "Deployment"): "deployments",
    ("v1", "Service"): "services",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("serving.knative.dev/v1", "Service"): "services",
    (DEEPMODULE_API, "DeepModule"): "deepmodules",
    (DEEPMODULE_API, "TrainingRun"): "trainingruns",
    ("v1", "Event"): "events",
    ("v1", "Secret"): "secrets",
    (DEEPMODULE_API, "CatalogSource"): "catalogsources",
    ("batch/v1", "Job"): "jobs",  # TrainingRun
}

PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ApiError(Exception):
    """A non-2xx answer; `transient` says whether retrying later may succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUS or self.status == 0


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = PLURALS[(api_version, kind)]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def load_configuration(kubeconfig: str | None = None) -> Any:
    """Client settings for the current context: in-cluster in a pod, else the kubeconfig."""
    from kubernetes import client, config

    from deepmarket.errors import UserError

    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return configuration
        except config.ConfigException:
            pass
    try:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError) as err:
        where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
        raise UserError(
            f"no usable Kubernetes credentials in {where}: {err} "
            "(give --kubeconfig, or run in a pod with a ServiceAccount)"
        ) from None
    return configuration


def connection_info(kubeconfig: str | None = None) -> Any:
    """The same credentials for kopf's own connection (re-read on every login, so rotated
    ServiceAccount tokens are picked up)."""
    import kopf

    c = load_configuration(kubeconfig)
    token = c.api_key.get("BearerToken") or c.api_key.get("authorization")
    if token and token.lower().startswith("bearer "):
        token = token[7:]
    return kopf.ConnectionInfo(
        server=c.host,
        ca_path=c.ssl_ca_cert,
        insecure=not c.verify_ssl,
        scheme="Bearer" if token else None,
        token=token,
        certificate_path=c.cert_file,
        private_key_path=c.key_file,
    )


def make_api_client(kubeconfig: str | None = None, pool_size: int = 16) -> Any:
    """An ApiClient for the current context (see `load_configuration`)."""
    from kubernetes import client

    configuration = load_configuration(kubeconfig)
    configuration.connection_pool_maxsize = pool_size
    api = client.ApiClient(configuration)
    api.user_agent = USER_AGENT
    return api


class Kube:
    """Plain-dict requests; every write names the field manager `deepmarket`."""

    def __init__(
        self,
        api_client: Any,
        timeout: float = 30.0,
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self.api = api_client
        self.timeout = timeout
        # Leader election's fence: once False, no write leaves this process (reads still do).
        self.may_write = may_write

    def fenced(self, may_write: Callable[[], bool], timeout: float | None = None) -> Kube:
        """The same connection, writing only while `may_write()` says so."""
        return Kube(self.api, self.timeout if timeout is None else timeout, may_write)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> dict[str, Any]:
        if method != "GET" and self.may_write is not None and not self.may_write():
            raise ApiError(
                0, "not writing: this replica is no longer sure to hold the leader lease"
            )
        headers = {"Accept": accept, "Content-Type": content_type}
        method, url, headers, body, _ = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )  # fmt: skip
        try:
            resp = self.api.call_api(method, url, headers, body, _request_timeout=self.timeout)
        except Exception as exc:  # connection refused, timeout, TLS: all worth a retry
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
        raw = resp.read()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"message": raw.decode(errors="replace")[:500]}
        if resp.status >= 400:
            raise ApiError(resp.status, str(data.get("message") or resp.reason))
        return data

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", object_path(api_version, kind, namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def metadata(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """An object's metadata only (PartialObjectMetadata), from the apiserver's watch cache
        (resourceVersion=0): the cheapest way to learn whether a name is taken, and by whom."""
        try:
            return self.request(
                "GET",
                object_path(api_version, kind, namespace, name),
                query=[("resourceVersion", "0")],
                accept=PARTIAL_METADATA,
            )
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def apply(
        self, obj: dict[str, Any], *, subresource: str = "", field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply `obj` (create or update) as `field_manager`."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if subresource:
            path += f"/{subresource}"
        return self.request(
            "PATCH",
            path,
            body=obj,
            query=[("fieldManager", field_manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    def json_patch(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """An RFC 6902 JSON patch (its `test` operations make it fail on a concurrent change)."""
        return self.request(
            "PATCH",
            object_path(api_version, kind, namespace, name),
            body=ops,
            query=[("fieldManager", FIELD_MANAGER)],
            content_type="application/json-patch+json",
        )

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete one object, only if it is still the one we saw (precondition on uid)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid},
                "propagationPolicy": "Background"}  # fmt: skip
        try:
            self.request("DELETE", object_path(api_version, kind, namespace, name), body=body)
        except ApiError as err:
            if err.status not in (404, 409):
                raise

    def event(
        self, involved: dict[str, Any], type_: str, reason: str, message: str
    ) -> dict[str, Any]:
        """Record a core/v1 Event on a DeepModule (what `kubectl describe` shows)."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            # Named like kubectl's events (<object>.<unique>), so audit logs can tell whose it is.
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", DEEPMODULE_API),
                "kind": involved.get("kind", "DeepModule"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "deepmarket-operator"},
            "reportingComponent": "deepmarket.dev/operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        return self.request("POST", object_path("v1", "Event", meta["namespace"]), body=body)

    def event_count(self, namespace: str, name: str, count: int) -> None:
        """Bump a repeated Event's count and lastTimestamp (how kubectl shows `x5 over 3m`)."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.request(
            "PATCH",
            object_path("v1", "Event", namespace, name),
            body={"count": count, "lastTimestamp": now},
            content_type="application/merge-patch+json",
        )

    def has_api(self, group_version: str) -> bool:
        """Whether the cluster serves a group/version, e.g. Knative's serving.knative.dev/v1."""
        try:
            self.request("GET", f"/apis/{group_version}")
            return True
        except ApiError as err:
            if err.status in (403, 404, 503):
                return False
            raise


class EventRecorder:
    """Events with client-go's aggregation: the same (object, type, reason, message) again
    within `window` seconds bumps the first Event's count instead of creating another."""

    def __init__(self, kube: Kube, window: float = 3600.0, size: int = 4096) -> None:
        self.kube, self.window, self.size = kube, window, size
        self.seen: dict[tuple[str, ...], tuple[str, int, float]] = {}
        self.lock = threading.Lock()

    def record(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = involved["metadata"]
        key = (meta["namespace"], str(meta.get("uid")), type_, reason, message[:1024])
        now = time.monotonic()
        with self.lock:
            seen = self.seen.get(key)
            if seen and now - seen[2] < self.window:
                self.seen[key] = (seen[0], seen[1] + 1, seen[2])
        if seen and now - seen[2] < self.window:
            try:
                self.kube.event_count(meta["namespace"], seen[0], seen[1] + 1)
                return
            except ApiError as err:
                if err.status != 404:  # expired (events live 1 h): record a new one
                    raise
        created = self.kube.event(involved, type_, reason, message)
        with self.lock:
            if len(self.seen) >= self.size:
                self.seen.pop(next(iter(self.seen)))
            self.seen[key] = (created["metadata"]["name"], 1, now)
