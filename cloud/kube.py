"""The Kubernetes API, through the official client: the only module of the cloud side that imports it.

Objects travel as plain maps in the API's own JSON spelling (``spec.nodeName``,
not ``spec.node_name``), read with ``_preload_content=False``: the edge receives
exactly what ``kubectl get -o json`` shows, and no time goes into building model
objects that would be turned back into maps at once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from cloud.errors import CloudError

log = logging.getLogger(__name__)

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
CONNECTION_POOL = 32


class KubeError(CloudError, RuntimeError):
    """The API server refused a request; ``status`` is its HTTP status (0 when it could not be reached)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"API server answered {status}: {reason}" if status else f"API server unreachable: {reason}")
        self.status = status
        self.reason = reason


class Gone(KubeError):
    """The watch's resourceVersion is too old (410): list again."""


class WatchIdle(KubeError):
    """Nothing came on a watch for its ``read_timeout_s``: watch again from the same resourceVersion (a quiet
    watch and a connection that died without a word look the same from here)."""


@dataclass(frozen=True)
class Kind:
    name: str  # edgehive's kind: pod, configmap, secret, node, device, devicemodel
    api_version: str
    kind: str
    list_all: str = ""  # method of the API listing every namespace; empty for custom resources
    plural: str = ""  # for custom resources
    list_namespaced: str = ""  # method of the API listing one namespace; empty: the kind is listed whole only
    api: str = "core"  # the attribute of Kube holding the API of ``list_all`` and ``list_namespaced``

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.split("/")[1]


DEVICES = "devices.kubeedge.io/v1beta1"
RULES = "rules.kubeedge.io/v1"
KINDS = {
    "pod": Kind("pod", "v1", "Pod", "list_pod_for_all_namespaces"),
    "configmap": Kind("configmap", "v1", "ConfigMap", "list_config_map_for_all_namespaces"),
    "secret": Kind("secret", "v1", "Secret", "list_secret_for_all_namespaces"),
    "persistentvolumeclaim": Kind("persistentvolumeclaim", "v1", "PersistentVolumeClaim",
                                  "list_persistent_volume_claim_for_all_namespaces"),
    "persistentvolume": Kind("persistentvolume", "v1", "PersistentVolume", "list_persistent_volume"),
    "node": Kind("node", "v1", "Node", "list_node"),
    "device": Kind("device", DEVICES, "Device", plural="devices"),
    "devicemodel": Kind("devicemodel", DEVICES, "DeviceModel", plural="devicemodels"),
    "devicestatus": Kind("devicestatus", DEVICES, "DeviceStatus", plural="devicestatuses"),
    "rule": Kind("rule", RULES, "Rule", plural="rules"),
    "lease": Kind("lease", "coordination.k8s.io/v1", "Lease", "list_lease_for_all_namespaces",
                  list_namespaced="list_namespaced_lease", api="coordination"),
    "ruleendpoint": Kind("ruleendpoint", RULES, "RuleEndpoint", plural="ruleendpoints"),
}


def _error(exc: Exception) -> KubeError:
    if isinstance(exc, ApiException):
        reason = exc.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            reason = json.loads(exc.body or "{}").get("message", reason)
        return KubeError(int(exc.status or 0), str(reason))
    return KubeError(0, str(exc))


def _redirect(configuration: k8s.Configuration, host: str) -> None:
    """Send every request to ``host``. Setting the host once is not enough for a kubeconfig with a token: the
    client then installs a hook that, before every request, copies the kubeconfig's settings (its server among
    them) onto the configuration again and installs itself anew; so the hook is wrapped, and wrapped again
    each time it has replaced itself."""
    configuration.host = host
    reload = configuration.refresh_api_key_hook
    if reload is None:
        return

    def reload_then_redirect(config: k8s.Configuration) -> None:
        reload(config)
        _redirect(config, host)

    configuration.refresh_api_key_hook = reload_then_redirect


class Kube:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.extensions = k8s.ApiextensionsV1Api(api_client)
        self.coordination = k8s.CoordinationV1Api(api_client)
        self.admissionregistration = k8s.AdmissionregistrationV1Api(api_client)

    def _lister(self, spec: Kind, namespace: str | None = None) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if namespace is not None:
            if not spec.list_namespaced:
                raise ValueError(f"{spec.name} is not listed by namespace here")
            return getattr(getattr(self, spec.api), spec.list_namespaced), (namespace,)
        if spec.plural:
            return self.custom.list_cluster_custom_object, (spec.group, spec.version, spec.plural)
        return getattr(getattr(self, spec.api), spec.list_all), ()

    @classmethod
    def connect(cls, kubeconfig: str | None, server: str | None = None, wait_s: float = 300.0) -> Kube:
        """From a kubeconfig file, or from the pod's service account when running in a cluster.

        A kubeconfig that does not exist yet is waited for (with a log line every 10 s): in a
        compose stack the API server's container writes it moments after the controllers start.
        ``server`` replaces the kubeconfig's address, for a kubeconfig written for another host
        (k3s writes https://127.0.0.1:6443).
        """
        if kubeconfig:
            _wait_for_file(Path(kubeconfig), wait_s)
        configuration = k8s.Configuration()
        try:
            if kubeconfig:
                k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration,
                                            persist_config=False)
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)
        except Exception as exc:
            raise KubeError(0, f"cannot load the Kubernetes configuration ({exc}); pass --kubeconfig") from exc
        if server:
            _redirect(configuration, server.rstrip("/"))
        # Watches hold a connection each, and EdgeController writes with several threads; the default pool
        # (5 per CPU) then drops connections and every later call pays a new TLS handshake.
        configuration.connection_pool_maxsize = CONNECTION_POOL
        return cls(k8s.ApiClient(configuration))

    def close(self) -> None:
        self.api_client.close()

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            response = fn(*args, _preload_content=False, **kwargs)
            data = response.data
            return json.loads(data) if data else {}
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc) from exc

    def _read(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        """One object read with ``fn``, or None when it does not exist (404); other errors raise KubeError."""
        try:
            return dict(self._call(fn, *args))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    # -- reading -----------------------------------------------------------------------

    def list(self, kind: str, *, namespace: str | None = None,
             label_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` (in ``namespace`` only, if given, and matching ``label_selector``), and the
        list's resourceVersion, to watch from."""
        spec = KINDS[kind]
        lister, args = self._lister(spec, namespace)
        result = self._call(lister, *args, **({} if label_selector is None else {"label_selector": label_selector}))
        items = result.get("items") or []
        for item in items:  # list items come without these
            item.setdefault("apiVersion", spec.api_version)
            item.setdefault("kind", spec.kind)
        return items, str(result.get("metadata", {}).get("resourceVersion", ""))

    def watch(self, kind: str, resource_version: str, timeout_s: int = 300, *, namespace: str | None = None,
              label_selector: str | None = None,
              read_timeout_s: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events (type, object) from ``resource_version``; BOOKMARKs included; Gone when it is too old;
        WatchIdle when ``read_timeout_s`` passes without a byte (without it, a connection that died silently
        blocks until the server's ``timeout_s``, which it can no longer send)."""
        spec = KINDS[kind]
        lister, args = self._lister(spec, namespace)
        kwargs: dict[str, Any] = {}
        if label_selector is not None:
            kwargs["label_selector"] = label_selector
        if read_timeout_s is not None:
            kwargs["_request_timeout"] = (read_timeout_s, read_timeout_s)
        try:
            response = lister(
                *args, watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
                timeout_seconds=timeout_s, _preload_content=False, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc) from exc
        try:
            for line in iter_resp_lines(response):
                if not line:
                    continue
                event = json.loads(line)
                kind_name, obj = event.get("type"), event.get("object") or {}
                if kind_name == "ERROR":
                    code = int(obj.get("code", 0))
                    if code == 410:
                        raise Gone(410, obj.get("message", "resource version too old"))
                    raise KubeError(code, obj.get("message", "watch error"))
                obj.setdefault("apiVersion", spec.api_version)
                obj.setdefault("kind", spec.kind)
                yield str(kind_name), obj
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise WatchIdle(0, f"nothing on the watch for {read_timeout_s} s") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc) from exc
        finally:
            response.close()
            response.release_conn()

    def get_node(self, name: str) -> dict[str, Any] | None:
        return self._read(self.core.read_node, name)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self.core.read_namespaced_pod, name, namespace)

    def get_configmap_data(self, namespace: str, name: str) -> dict[str, str] | None:
        found = self._read(self.core.read_namespaced_config_map, name, namespace)
        return None if found is None else {str(k): str(v) for k, v in (found.get("data") or {}).items()}

    def get_secret(self, namespace: str, name: str) -> tuple[dict[str, bytes], str] | None:
        """The Secret's data, decoded, and its resourceVersion (for a conflict-checked replace)."""
        try:
            obj = self._call(self.core.read_namespaced_secret, name, namespace)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return data, str(obj["metadata"]["resourceVersion"])

    # -- writing -----------------------------------------------------------------------

    def ensure_namespace(self, name: str) -> None:
        try:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            self._call(self.core.create_namespace, body)
        except KubeError as exc:
            if exc.status != 409:
                raise

    def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> bool:
        """False when it already exists (it is left as it is)."""
        try:
            self._call(self.core.create_namespaced_secret, namespace, _secret(name, data))
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def replace_secret(self, namespace: str, name: str, data: dict[str, bytes], resource_version: str) -> None:
        """Replace only if nobody changed it since ``resource_version`` was read (KubeError 409 otherwise)."""
        body = _secret(name, data)
        body["metadata"]["resourceVersion"] = resource_version
        self._call(self.core.replace_namespaced_secret, name, namespace, body)

    def create_node(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call(self.core.create_node, body))

    def patch_node(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call(self.core.patch_node, name, patch, _content_type=STRATEGIC))

    def patch_node_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call(self.core.patch_node_status, name, patch, _content_type=STRATEGIC))

    def patch_pod_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch: the lists in it (addresses, container statuses, conditions) replace the stored ones."""
        return dict(self._call(self.core.patch_namespaced_pod_status, name, namespace, patch, _content_type=MERGE))

    def ensure_crds(self, manifests: Iterable[dict[str, Any]]) -> None:
        """Create the CRDs that are missing (an existing one is left as its owner made it)."""
        for manifest in manifests:
            try:
                self._call(self.extensions.create_custom_resource_definition, manifest)
                log.info("installed CRD %s", manifest["metadata"]["name"])
            except KubeError as exc:
                if exc.status != 409:
                    raise

    def get_custom(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        spec = KINDS[kind]
        return self._read(self.custom.get_namespaced_custom_object, spec.group, spec.version, namespace, spec.plural,
                          name)

    def patch_custom_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        spec = KINDS[kind]
        return dict(self._call(self.custom.patch_namespaced_custom_object_status, spec.group, spec.version,
                               namespace, spec.plural, name, patch, _content_type=MERGE))

    def create_custom(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        spec = KINDS[kind]
        return dict(self._call(self.custom.create_namespaced_custom_object, spec.group, spec.version, namespace,
                               spec.plural, body))

    def patch_custom(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of the object itself (its spec); with metadata.resourceVersion it fails on a conflict."""
        spec = KINDS[kind]
        return dict(self._call(self.custom.patch_namespaced_custom_object, spec.group, spec.version, namespace,
                               spec.plural, name, patch, _content_type=MERGE))

    def create_pod_token(self, namespace: str, service_account: str, pod: str, pod_uid: str,
                         audiences: tuple[str, ...], expiration_seconds: int) -> tuple[str, str]:
        """A TokenRequest for ``service_account`` bound to the pod (it stops being valid when that pod is gone),
        as kubelet makes one: no audiences means the API server's own. Returns (token, expirationTimestamp)."""
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds,
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": pod_uid}}
        if audiences:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        answer = self._call(self.core.create_namespaced_service_account_token, service_account, namespace, body)
        status = answer.get("status") or {}
        return str(status.get("token", "")), str(status.get("expirationTimestamp", ""))

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Finish a deletion as a kubelet does: grace period 0, only if the pod is still this UID."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self._call(self.core.delete_namespaced_pod, name, namespace, body=body)
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise

    def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call(self.core.create_namespaced_event, namespace, body))

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call(self.core.patch_namespaced_event, name, namespace, patch, _content_type=MERGE))


    # -- leases (coordination.k8s.io/v1) -----------------------------------------------

    def get_lease(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any] | None:
        """``timeout_s`` bounds the request: a leader must learn it cannot renew before its Lease runs out."""
        try:
            kwargs: dict[str, Any] = {} if timeout_s is None else {"_request_timeout": timeout_s}
            return dict(self._call(self.coordination.read_namespaced_lease, name, namespace, **kwargs))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """KubeError 409 when it exists already."""
        return dict(self._call(self.coordination.create_namespaced_lease, namespace, body))

    def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """With ``metadata.resourceVersion`` in ``body``: KubeError 409 if someone else wrote it since."""
        return dict(self._call(self.coordination.replace_namespaced_lease, name, namespace, body))

    def list_leases(self, namespace: str, label_selector: str,
                    timeout_s: float | None = None) -> tuple[dict[str, Any], ...]:
        """The Leases in ``namespace`` that match ``label_selector``; ``timeout_s`` bounds the request (a
        replica must learn that the API server is out of reach before its own Lease runs out)."""
        kwargs: dict[str, Any] = {"label_selector": label_selector}
        if timeout_s is not None:
            kwargs["_request_timeout"] = timeout_s
        result = self._call(self.coordination.list_namespaced_lease, namespace, **kwargs)
        return tuple(result.get("items") or ())

    def write_lease(self, namespace: str, body: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Create the Lease, or replace it when ``body`` carries the ``metadata.resourceVersion`` it was read
        at (KubeError 409 if someone else wrote it since, or if it exists already when creating)."""
        kwargs: dict[str, Any] = {} if timeout_s is None else {"_request_timeout": timeout_s}
        name = body["metadata"]["name"]
        if body["metadata"].get("resourceVersion"):
            return dict(self._call(self.coordination.replace_namespaced_lease, name, namespace, body, **kwargs))
        return dict(self._call(self.coordination.create_namespaced_lease, namespace, body, **kwargs))

    def delete_lease(self, namespace: str, name: str, timeout_s: float | None = None) -> None:
        """Gone already is fine."""
        kwargs: dict[str, Any] = {} if timeout_s is None else {"_request_timeout": timeout_s}
        try:
            self._call(self.coordination.delete_namespaced_lease, name, namespace, **kwargs)
        except KubeError as exc:
            if exc.status != 404:
                raise

    # -- admission webhooks ------------------------------------------------------------

    def apply_mutating_webhook(self, body: dict[str, Any]) -> None:
        """Create the MutatingWebhookConfiguration, or replace the one of that name with ``body``."""
        name = body["metadata"]["name"]
        try:
            self._call(self.admissionregistration.create_mutating_webhook_configuration, body)
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
        current = self._call(self.admissionregistration.read_mutating_webhook_configuration, name)
        replacement = {**body, "metadata": {**body["metadata"],
                                            "resourceVersion": current["metadata"]["resourceVersion"]}}
        self._call(self.admissionregistration.replace_mutating_webhook_configuration, name, replacement)

    # -- any path ----------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None,
                timeout_s: float = 30.0, content_type: str = "application/json") -> bytes:
        """The raw body of any API request (a node's proxy, an aggregated API's objects); KubeError otherwise."""
        try:
            method, url, headers, payload, post = self.api_client.param_serialize(
                method, path, query_params=list((query or {}).items()), body=body,
                header_params={"Accept": "application/json, */*", "Content-Type": content_type},
                auth_settings=["BearerToken"])
            response = self.api_client.call_api(method, url, headers, payload, post, _request_timeout=timeout_s)
            data = bytes(response.read() or b"")
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc) from exc
        if response.status >= 400:
            reason = response.reason or ""
            with contextlib.suppress(ValueError, AttributeError):
                reason = json.loads(data).get("message", reason)
            raise KubeError(int(response.status), str(reason))
        return data

    def request_json(self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None,
                     content_type: str = "application/json") -> dict[str, Any]:
        data = self.request(method, path, query=query, body=body, content_type=content_type)
        return dict(json.loads(data)) if data else {}


def _wait_for_file(path: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    next_note = time.monotonic()
    while not path.exists():
        now = time.monotonic()
        if now >= deadline:
            raise KubeError(0, f"kubeconfig {path} did not appear within {wait_s:.0f} s; check --kubeconfig")
        if now >= next_note:
            log.info("waiting for kubeconfig %s to appear", path)
            next_note = now + 10.0
        time.sleep(0.2)


def _secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
