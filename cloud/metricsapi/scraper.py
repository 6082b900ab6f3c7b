"""Every ``interval_s``, each edge node's ``/metrics/resource`` read through the API server's node proxy.

Through the API server rather than straight to the stream server: the node proxy is how any client reaches
a kubelet, so this works unchanged on the embedded stack and on a user's cluster, and the stream server
learns the node from the proxy's ``X-Forwarded-Uri`` (schemas/metricsrequest.py) with no path of our own.
Our identity needs ``get`` on ``nodes/proxy`` and ``list`` on ``nodes``, as metrics-server's does.
Nodes are scraped in parallel, each with its own timeout, so one slow or offline node delays no other.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from cloud.kube import Kube, KubeError
from cloud.metricsapi.store import MetricsStore
from schemas.kubeletmetrics import MetricsTextError, parse

log = logging.getLogger(__name__)

MAX_PARALLEL = 8


class Scraper:
    def __init__(self, kube: Kube, store: MetricsStore, *, interval_s: float, node_selector: str,
                 timeout_s: float) -> None:
        self.kube = kube
        self.store = store
        self.interval_s = interval_s
        self.node_selector = node_selector
        self.timeout_s = timeout_s
        self.failures: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scraper", daemon=True)
        self._pool = ThreadPoolExecutor(MAX_PARALLEL, thread_name_prefix="scrape")

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.scrape_all()
            except KubeError as exc:
                log.warning("cannot list the nodes to scrape: %s", exc)
            except RuntimeError:  # the pool was shut down under us: we are stopping
                if self._stop.is_set():
                    return
                raise
            self._stop.wait(max(self.interval_s - (time.monotonic() - started), 0.0))

    def scrape_all(self) -> None:
        query = {"labelSelector": self.node_selector} if self.node_selector else {}
        nodes = [str(item["metadata"]["name"])
                 for item in self.kube.request_json("GET", "/api/v1/nodes", query=query).get("items") or []]
        self.store.forget_except(set(nodes))
        list(self._pool.map(self.scrape, nodes))

    def scrape(self, node: str) -> None:
        try:
            scraped_at = time.time()
            text = self.kube.request("GET", f"/api/v1/nodes/{quote(node)}/proxy/metrics/resource",
                                     timeout_s=self.timeout_s)
            self.store.record(node, parse(text.decode(errors="replace"), scraped_at))
            self.failures.pop(node, None)
        except (KubeError, MetricsTextError) as exc:
            if self.failures.get(node) != str(exc):
                log.warning("node %s not scraped: %s", node, exc)
            self.failures[node] = str(exc)
