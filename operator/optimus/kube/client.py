"""The operator's calls to the Kubernetes API: `KubeApi`, what the controller needs (writing
a job's status, creating and deleting pods and Services, listing one job's pods, recording
events, and listing nodes and pods where no kopf index holds them), and `KubernetesApi`,
its implementation over the official client, run in threads so that the kopf event loop
never blocks. The controller's tests put an in-memory fake in its place."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

import kubernetes
from kubernetes.client.rest import ApiException

from optimus.api.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION, JobMeta
from optimus.kube.builders import job_selector
from optimus.kube.store import ConfigMapConflict

log = logging.getLogger("optimus.kube")


def load_kube_config() -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


class KubeApi(Protocol):
    """The Kubernetes API as the controller uses it; every object is a plain dict."""

    async def list_nodes(self) -> list[dict[str, Any]]:
        """Every node."""
        ...

    async def list_pods(self, *, field_selector: str = "") -> list[dict[str, Any]]:
        """The pods of every namespace (those `field_selector` selects, when given)."""
        ...

    async def patch_status(self, meta: JobMeta, status: Mapping[str, Any]) -> bool:
        """Merge-patch the job's status; False when the job is gone."""
        ...

    async def create(self, body: Mapping[str, Any]) -> None:
        """Create a Pod or Service; one that already exists is left as it is."""
        ...

    async def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod; one that is gone already is no error."""
        ...

    async def delete_service(self, namespace: str, name: str) -> None:
        """Delete a Service; one that is gone already is no error."""
        ...

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The pods of one job (by its pod label), read from the API server itself."""
        ...

    async def event(self, meta: JobMeta, type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event on the job (best effort: never raises)."""
        ...

    # the knowledge store's ConfigMap (optimus.kube.store)
    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None when there is none."""
        ...

    async def create_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a ConfigMap; ConfigMapConflict when it exists already."""
        ...

    async def replace_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a ConfigMap at its metadata.resourceVersion; ConfigMapConflict when it
        changed since."""
        ...


class KubernetesApi:
    """`KubeApi` over the official client: thin async wrappers returning plain dicts."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        self.api_client = api_client or load_kube_config()
        # typed as Any: the client accepts plain dicts as bodies, its stubs do not say so
        self.core: Any = kubernetes.client.CoreV1Api(self.api_client)
        self.custom: Any = kubernetes.client.CustomObjectsApi(self.api_client)

    def _plain(self, obj: Any) -> Any:
        return self.api_client.sanitize_for_serialization(obj)

    async def list_nodes(self) -> list[dict[str, Any]]:
        result = await asyncio.to_thread(self.core.list_node)
        return list(self._plain(result)["items"])

    async def list_pods(self, *, field_selector: str = "") -> list[dict[str, Any]]:
        result = await asyncio.to_thread(self.core.list_pod_for_all_namespaces,
                                         field_selector=field_selector or None)
        return list(self._plain(result)["items"])

    async def list_jobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            result = await asyncio.to_thread(self.custom.list_namespaced_custom_object,
                                             GROUP, VERSION, namespace, PLURAL)
        else:
            result = await asyncio.to_thread(self.custom.list_cluster_custom_object,
                                             GROUP, VERSION, PLURAL)
        return list(result["items"])

    async def patch_status(self, meta: JobMeta, status: Mapping[str, Any]) -> bool:
        """Merge-patch the job's status; False when the job is gone."""
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object_status, GROUP, VERSION,
                meta.namespace, PLURAL, meta.name, {"status": dict(status)},
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def create(self, body: Mapping[str, Any]) -> None:
        """Create a Pod or Service; one that already exists is left as it is."""
        namespace = body["metadata"]["namespace"]
        create = (self.core.create_namespaced_pod if body["kind"] == "Pod"
                  else self.core.create_namespaced_service)
        try:
            await asyncio.to_thread(create, namespace, dict(body))
        except ApiException as error:
            if error.status != 409:
                raise

    async def delete_pod(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(self.core.delete_namespaced_pod, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    async def delete_service(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(self.core.delete_namespaced_service, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        result = await asyncio.to_thread(self.core.list_namespaced_pod, namespace,
                                         label_selector=_selector(job_selector(job)))
        return list(self._plain(result)["items"])

    async def event(self, meta: JobMeta, type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event on the job (failures are logged, never raised)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.name}.", "namespace": meta.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": meta.name,
                               "namespace": meta.namespace, "uid": meta.uid},
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": "optimus-operator"},
            "reportingComponent": "optimus-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await asyncio.to_thread(self.core.create_namespaced_event, meta.namespace, body)
        except Exception as error:  # an event is best effort: never fail a round for it
            log.warning("could not record event %s on %s: %s", reason, meta.key, error)

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result = await asyncio.to_thread(self.core.read_namespaced_config_map, name,
                                             namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(self._plain(result))

    async def create_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            result = await asyncio.to_thread(self.core.create_namespaced_config_map,
                                             body["metadata"]["namespace"], dict(body))
        except ApiException as error:
            if error.status == 409:
                raise ConfigMapConflict(str(error.reason)) from None
            raise
        return dict(self._plain(result))

    async def replace_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        metadata = body["metadata"]
        try:
            result = await asyncio.to_thread(self.core.replace_namespaced_config_map,
                                             metadata["name"], metadata["namespace"],
                                             dict(body))
        except ApiException as error:
            if error.status in (404, 409):  # gone or changed since it was read
                raise ConfigMapConflict(str(error.reason)) from None
            raise
        return dict(self._plain(result))
