"""Pod volumes on the host: ConfigMap and Secret files, emptyDirs (a Memory one a tmpfs: memorydirs.py),
hostPaths checked by their type (hostpaths.py), and the hostPath or local PersistentVolumes of claims (a local
volume's directory must exist: it is the administrator's disk, not made here).

Each pod's volumes live under ``<data-dir>/pods/<uid>/volumes/<name>/`` and are
bind-mounted into its containers. The files of ConfigMap, Secret, projected and
downward API volumes are switched as one payload and only the changed ones are
written (atomicfiles.py), so a running container sees either the old or the new
volume, never a mix, and sees changes without a restart.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from edge.edged.atomicfiles import Manifest, write_files
from edge.edged.hostpaths import MountFailed, check_host_path
from edge.edged.memorydirs import mount_tmpfs, unmount_under
from edge.edged.podspec import ContainerPlan, PodPlan, VolumePlan
from edge.edged.runtime import HostMount
from edge.edged.volumeowner import READ_ONLY_MASK, prepare_owner

log = logging.getLogger(__name__)


class Volumes:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "pods"
        self._written: dict[Path, Manifest] = {}
        """Each file volume's last payload (atomicfiles.py): an unchanged one is not read back to be compared."""

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    def prepare(self, plan: PodPlan) -> None:
        """Create every volume of the pod and write its files (again: this is how updates arrive). Raises
        MountFailed when a volume cannot be set up (yet): a hostPath not of its type, a tmpfs not mounted; the
        first failure, after every other volume is done (a ConfigMap's update is not held up by it)."""
        failures: list[MountFailed] = []
        for volume in plan.volumes.values():
            try:
                self._prepare_one(plan, volume)
            except MountFailed as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def _prepare_one(self, plan: PodPlan, volume: VolumePlan) -> None:
        if volume.kind in ("configMap", "secret", "emptyDir"):
            target = self.pod_dir(plan.uid) / "volumes" / volume.name
            target.mkdir(parents=True, exist_ok=True)
            if volume.memory:
                mount_tmpfs(volume.name, target, volume.size_limit)
            if volume.files is not None:
                fs_group = plan.fs_group
                self._written[target] = write_files(target, volume.files.files, READ_ONLY_MASK if fs_group else 0,
                                                    fs_group, self._written.get(target)).manifest
            prepare_owner(target, volume.kind, plan.fs_group)
        elif volume.kind == "hostPath":
            check_host_path(volume.name, Path(volume.host_path), volume.host_path_type)
        elif volume.kind == "local":
            check_host_path(volume.name, Path(volume.host_path), "Directory")
            if not volume.read_only:  # kubelet gives a local PV to fsGroup
                prepare_owner(Path(volume.host_path), volume.kind, plan.fs_group)

    def mounts(self, plan: PodPlan, container: ContainerPlan) -> list[HostMount]:
        base = self.pod_dir(plan.uid) / "volumes"
        out = []
        for m in container.mounts:
            volume = plan.volumes[m.volume]
            source = Path(volume.host_path) if volume.kind in ("hostPath", "local") else base / volume.name
            if m.sub_path:
                source = source / m.sub_path
                if volume.files is not None:  # through the ..data symlink: the payload's file, as kubelet mounts
                    source = source.resolve()  # it (a subPath does not follow the volume's later updates)
            read_only = m.read_only or volume.read_only or volume.kind in ("configMap", "secret")
            out.append(HostMount(str(source), m.target, read_only))
        return out

    def remove(self, uid: str) -> None:
        """The pod's directory, its Memory emptyDirs unmounted first (if one cannot be, the directory stays, to
        be removed by a later pass: removing it would empty the tmpfs through its mount point and keep the mount)."""
        try:
            unmount_under(self.pod_dir(uid))
        except OSError as exc:
            log.warning("pod %s: %s", uid, exc)
            return
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)
        for target in [t for t in self._written if t.is_relative_to(self.pod_dir(uid))]:
            del self._written[target]

    def known_uids(self) -> set[str]:
        return {p.name for p in self.root.iterdir()} if self.root.is_dir() else set()

