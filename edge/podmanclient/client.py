"""The calls the edge makes to podman's libpod API, each one request (or a short series) on a new connection.

What each answers is podman's own JSON (a dict or list of dicts, as podman-py's ``attrs`` were); the
callers read the fields they need. Errors are PodmanError (edge.podmanclient.transport).
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator, Mapping
from typing import Any

from edge.podmanclient.frames import demux, joined
from edge.podmanclient.transport import DEFAULT_TIMEOUT_S, PodmanError, call, error_of, parse_url, path_of, query, send

PULL_READ_TIMEOUT_S = 600.0
"""How long a pull may go without a line of progress (a layer of a slow registry) before it is given up."""
REMOVE_TIMEOUT_S = 180.0
"""A forced removal of a pod stops its containers with their own grace first."""


def registry_auth(auth: Mapping[str, str]) -> str:
    """The ``X-Registry-Auth`` header for ``auth`` (username, password, ...): base64url of its JSON, as
    podman-py and the docker client send it."""
    return base64.urlsafe_b64encode(json.dumps(dict(auth)).encode()).decode()


def image_reference(image: str) -> str:
    """``image`` with ``:latest`` when it names no tag (a port in the registry's address is no tag), as
    podman-py asks podman to pull it."""
    name, _, tag = image.rpartition(":")
    if name and "/" not in tag:
        return image
    return f"{image}:latest"


class PodmanClient:
    def __init__(self, url: str) -> None:
        self.url = parse_url(url)

    def _get(self, path: str, timeout: float | None = DEFAULT_TIMEOUT_S) -> Any:
        return call(self.url, "GET", path, timeout=timeout).json()

    def _post(self, path: str, body: object | None = None, timeout: float | None = DEFAULT_TIMEOUT_S) -> Any:
        return call(self.url, "POST", path, body=body, timeout=timeout).json()

    # -- system ----------------------------------------------------------------------------------

    def ping(self) -> bool:
        return call(self.url, "GET", path_of("/_ping"), timeout=10.0).body.strip() == b"OK"

    def info(self) -> dict[str, Any]:
        """``podman info``: the host, the storage (``store.graphRoot``), the registries."""
        found = self._get(path_of("/info"))
        return found if isinstance(found, dict) else {}

    def version(self) -> dict[str, Any]:
        found = self._get(path_of("/version"))
        return found if isinstance(found, dict) else {}

    # -- images ----------------------------------------------------------------------------------

    def image_exists(self, image: str) -> bool:
        try:
            call(self.url, "GET", path_of("/images/{}/exists", image))
        except PodmanError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def image(self, image: str) -> dict[str, Any]:
        """The image's inspect (NotFound: not here)."""
        found = self._get(path_of("/images/{}/json", image))
        return found if isinstance(found, dict) else {}

    def pull(self, image: str, auth: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Pull ``image`` (policy always, TLS verified, docker-compatible progress lines) and yield each line of
        progress. podman answers 200 at once and says what went wrong (the registry's 401) in a line's
        ``error``: the caller reads them."""
        params = {"policy": "always", "reference": image_reference(image), "tlsVerify": True, "compatMode": True}
        headers = {"X-Registry-Auth": registry_auth(auth) if auth else ""}
        conn, response = send(self.url, "POST", path_of("/images/pull") + query(params), headers=headers,
                              timeout=PULL_READ_TIMEOUT_S)
        try:
            if response.status >= 400:
                raise error_of(response.status, response.read())
            for raw in response:
                line = raw.strip()
                if not line:
                    continue
                try:
                    parsed = json.loads(line)
                except ValueError:
                    parsed = {"stream": line.decode(errors="replace")}
                yield parsed if isinstance(parsed, dict) else {"stream": str(parsed)}
        except (OSError, http.client.HTTPException) as exc:
            raise PodmanError(0, f"reading the pull of {image} failed: {exc!r}") from exc
        finally:
            conn.close()

    # -- pods ------------------------------------------------------------------------------------

    def pods(self, filters: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        found = self._get(path_of("/pods/json") + query({"filters": dict(filters)}))
        return found if isinstance(found, list) else []

    def pod(self, name: str) -> dict[str, Any]:
        """The pod's inspect (NotFound: no such pod)."""
        found = self._get(path_of("/pods/{}/json", name))
        return found if isinstance(found, dict) else {}

    def create_pod(self, spec: Mapping[str, Any]) -> str:
        """Create a pod from its PodSpecGenerator JSON (``name`` among its fields); its id."""
        return str((self._post(path_of("/pods/create"), dict(spec)) or {}).get("Id", ""))

    def start_pod(self, name: str) -> None:
        self._post(path_of("/pods/{}/start", name))

    def stop_pod(self, name: str, timeout_s: int) -> None:
        """Stop the pod's containers, each with ``timeout_s`` before SIGKILL (podman answers 304 when none ran)."""
        self._post(path_of("/pods/{}/stop", name) + query({"t": timeout_s}), timeout=timeout_s * 1.5 + 30)

    def remove_pod(self, name: str, force: bool) -> None:
        call(self.url, "DELETE", path_of("/pods/{}", name) + query({"force": force}), timeout=REMOVE_TIMEOUT_S)

    # -- containers -----------------------------------------------------------------------------

    def containers(self, filters: Mapping[str, list[str]], all_: bool = True) -> list[dict[str, Any]]:
        found = self._get(path_of("/containers/json") + query({"all": all_, "filters": dict(filters)}))
        return found if isinstance(found, list) else []

    def container(self, name: str) -> dict[str, Any]:
        """The container's inspect (NotFound: no such container)."""
        found = self._get(path_of("/containers/{}/json", name))
        return found if isinstance(found, dict) else {}

    def create_container(self, spec: Mapping[str, Any]) -> str:
        """Create a container from its SpecGenerator JSON (edge.podmanclient.specgen); its id."""
        return str((self._post(path_of("/containers/create"), dict(spec)) or {}).get("Id", ""))

    def start_container(self, name: str) -> None:
        self._post(path_of("/containers/{}/start", name))

    def stop_container(self, name: str, timeout_s: int) -> None:
        self._post(path_of("/containers/{}/stop", name) + query({"timeout": timeout_s}),
                   timeout=timeout_s * 1.5 + 30)

    def kill_container(self, name: str, signal: str) -> None:
        self._post(path_of("/containers/{}/kill", name) + query({"signal": signal}))

    def remove_container(self, name: str, force: bool) -> None:
        call(self.url, "DELETE", path_of("/containers/{}", name) + query({"force": force}), timeout=REMOVE_TIMEOUT_S)

    def logs(self, name: str, tail: int) -> bytes:
        """The last ``tail`` lines of the container's stdout and stderr as they came, without podman's framing."""
        params = {"stdout": True, "stderr": True, "tail": tail}
        return joined(call(self.url, "GET", path_of("/containers/{}/logs", name) + query(params)).body)

    def exec_run(self, name: str, command: list[str], timeout_s: float | None = None
                 ) -> tuple[int, bytes, bytes]:
        """Run ``command`` in the container without a terminal or stdin; its exit code, stdout and stderr.
        The start's answer is the command's multiplexed output, to its end: with no ``timeout_s`` it is awaited
        as long as the command runs (EdgeD's handlers give up the wait, not the command, on their own timeout)."""
        created = self._post(path_of("/containers/{}/exec", name), {
            "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False, "Privileged": False,
            "Cmd": command})
        exec_id = str((created or {}).get("Id", ""))
        output = call(self.url, "POST", path_of("/exec/{}/start", exec_id), body={"Detach": False, "Tty": False},
                      timeout=timeout_s).body
        info = self._get(path_of("/exec/{}/json", exec_id))
        code = info.get("ExitCode") if isinstance(info, dict) else None
        out, err = demux(output)
        return int(code or 0), out, err
