"""The operator's only I/O: a thin JSON client over the Kubernetes API (imperative shell).

Requests go through the `kubernetes` client's configured connection (kubeconfig or in-cluster
credentials) but skip its model classes: objects stay plain dicts, the form the pure builders
produce and compare, and deserialising 1,000 Deployments into models would dominate CPU.
"""

from __future__ import annotations

import json
import uuid
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
}

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

    def __init__(self, api_client: Any, timeout: float = 30.0) -> None:
        self.api = api_client
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
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

    def apply(self, obj: dict[str, Any], *, subresource: str = "") -> dict[str, Any]:
        """Server-side apply `obj` (create or update) as field manager `deepmarket`."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if subresource:
            path += f"/{subresource}"
        return self.request(
            "PATCH",
            path,
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
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

    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
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
        self.request("POST", object_path("v1", "Event", meta["namespace"]), body=body)

    def has_api(self, group_version: str) -> bool:
        """Whether the cluster serves a group/version, e.g. Knative's serving.knative.dev/v1."""
        try:
            self.request("GET", f"/apis/{group_version}")
            return True
        except ApiError as err:
            if err.status in (403, 404, 503):
                return False
            raise
