"""ConfigMap, Secret, projected and downward API volume files on real files: kubelet's ..data layout switched as one,
only the changed files written, nothing at all written when the payload is the same."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from edge.edged.atomicfiles import DATA, write_files
from edge.edged.podspec import PodSpecError, plan_pod
from edge.edged.volumes import Volumes
from schemas.resource import ResourceKey


def payload_dir(volume: Path) -> Path:
    return volume / os.readlink(volume / DATA)


def snapshot(volume: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under the volume, not followed: (inode, mtime ns, mode), to see that nothing was touched."""
    found = {}
    for path in [volume, *volume.rglob("*")]:
        info = path.lstat()
        found[str(path.relative_to(volume))] = (info.st_ino, info.st_mtime_ns, info.st_mode)
    return found


def test_the_first_write_makes_kubelets_layout(tmp_path: Path) -> None:
    volume = tmp_path / "cfg"
    update = write_files(volume, {"a": (b"one", 0o644), "dir/b": (b"two", 0o400)})
    assert update.switched
    assert sorted(update.written) == ["a", "dir/b"]
    assert update.linked == []
    payload = payload_dir(volume)
    assert payload.name.startswith("..20")
    assert payload.is_dir()
    assert not payload.is_symlink()
    assert stat.S_IMODE(payload.stat().st_mode) == 0o755
    assert os.readlink(volume / "a") == "..data/a"
    assert os.readlink(volume / "dir") == "..data/dir"
    assert (volume / "a").read_bytes() == b"one"
    assert (volume / "dir" / "b").read_bytes() == b"two"
    assert stat.S_IMODE((volume / "dir" / "b").stat().st_mode) == 0o400
    assert sorted(p.name for p in volume.iterdir()) == sorted([DATA, payload.name, "a", "dir"])


def test_an_identical_update_writes_nothing(tmp_path: Path) -> None:
    volume = tmp_path / "cfg"
    files = {"a": (b"one", 0o644), "dir/b": (b"two", 0o400)}
    write_files(volume, files)
    before = snapshot(volume)
    update = write_files(volume, dict(files))
    assert not update.switched
    assert update.written == update.linked == update.removed == []
    assert snapshot(volume) == before  # no entry made, replaced or touched, the directories' mtimes included


def test_a_changed_key_is_the_only_file_written_the_others_are_the_same_inodes(tmp_path: Path) -> None:
    volume = tmp_path / "cfg"
    write_files(volume, {"a": (b"one", 0o644), "b": (b"two", 0o644), "sub/c": (b"three", 0o600)})
    old_payload = payload_dir(volume)
    inodes = {name: (volume / name).stat().st_ino for name in ("a", "b", "sub/c")}
    update = write_files(volume, {"a": (b"one", 0o644), "b": (b"TWO!", 0o644), "sub/c": (b"three", 0o600)})
    assert update.switched
    assert update.written == ["b"]
    assert sorted(update.linked) == ["a", "sub/c"]
    assert payload_dir(volume) != old_payload
    assert not old_payload.exists()
    assert (volume / "b").read_bytes() == b"TWO!"
    assert (volume / "b").stat().st_ino != inodes["b"]
    assert (volume / "a").stat().st_ino == inodes["a"]
    assert (volume / "sub/c").stat().st_ino == inodes["sub/c"]
    assert (volume / "a").stat().st_nlink == 1  # the link left with the old payload


def test_a_container_holding_the_old_payload_sees_it_whole(tmp_path: Path) -> None:
    volume = tmp_path / "cfg"
    write_files(volume, {"a": (b"old a", 0o644), "b": (b"old b", 0o644)})
    held = os.open(volume / DATA, os.O_RDONLY | os.O_DIRECTORY)  # a reader that resolved ..data before the switch
    try:
        write_files(volume, {"a": (b"new a", 0o644), "b": (b"new b", 0o644)})
        assert (volume / "a").read_bytes() + (volume / "b").read_bytes() == b"new anew b"
        assert sorted(os.listdir(held)) == []  # the old directory was removed whole, never half rewritten
    finally:
        os.close(held)


def test_removed_keys_disappear_and_a_mode_change_is_a_write(tmp_path: Path) -> None:
    volume = tmp_path / "cfg"
    write_files(volume, {"a": (b"one", 0o644), "gone": (b"x", 0o644), "olddir/f": (b"y", 0o644)})
    update = write_files(volume, {"a": (b"one", 0o600)})
    assert update.written == ["a"]
    assert update.linked == []
    assert update.removed == ["gone", "olddir/f"]
    assert sorted(p.name for p in volume.iterdir()) == sorted([DATA, payload_dir(volume).name, "a"])
    assert stat.S_IMODE((volume / "a").stat().st_mode) == 0o600
    update = write_files(volume, {})
    assert update.switched
    assert update.removed == ["a"]
    assert sorted(p.name for p in volume.iterdir()) == sorted([DATA, payload_dir(volume).name])
    assert list(payload_dir(volume).iterdir()) == []


def test_the_fs_groups_bits_are_given_at_once_and_do_not_make_a_file_changed(tmp_path: Path) -> None:
    volume, gid = tmp_path / "sec", os.getgid()
    write_files(volume, {"key": (b"secret", 0o400)}, extra_mode=0o440, gid=gid)
    assert stat.S_IMODE((volume / "key").stat().st_mode) == 0o440
    assert (volume / "key").stat().st_gid == gid
    before = snapshot(volume)
    assert not write_files(volume, {"key": (b"secret", 0o400)}, extra_mode=0o440, gid=gid).switched
    assert snapshot(volume) == before


def test_the_layout_before_this_one_and_a_crashed_write_are_cleaned_up(tmp_path: Path) -> None:
    volume = tmp_path / "cfg"
    (volume / "nested").mkdir(parents=True)
    (volume / "a").write_bytes(b"plain file of the old layout")
    (volume / "nested" / "f").write_bytes(b"old")
    (volume / ".tmp-abc").write_bytes(b"a temporary file the old writer left")
    (volume / "removed-key").write_bytes(b"x")
    (volume / "..2026_01_01_00_00_00.crashed").mkdir()  # a payload never switched to
    update = write_files(volume, {"a": (b"new", 0o644), "nested/f": (b"new f", 0o644)})
    assert update.switched
    assert sorted(update.written) == ["a", "nested/f"]
    assert sorted(p.name for p in volume.iterdir()) == sorted([DATA, payload_dir(volume).name, "a", "nested"])
    assert (volume / "a").is_symlink()
    assert (volume / "nested").is_symlink()
    assert (volume / "nested" / "f").read_bytes() == b"new f"


# -- through EdgeD's Volumes and a planned pod -------------------------------------------------------------------


def secret(data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "s", "namespace": "ns", "resourceVersion": "1"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "p"}},
            "spec": {"containers": [{"name": "main", "image": "i", "volumeMounts": [
                {"name": "s", "mountPath": "/s"}, {"name": "s", "mountPath": "/one", "subPath": "a"}]}],
                "volumes": [{"name": "s", "projected": {"defaultMode": 0o400, "sources": [
                    {"secret": {"name": "s"}},
                    {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}}],
                **spec}}


def test_a_projected_volume_under_an_fs_group_is_rewritten_only_where_it_changed(tmp_path: Path) -> None:
    store = {ResourceKey("ns", "secret", "s"): secret({"a": "1", "b": "2"})}
    volumes = Volumes(tmp_path / "edged")
    spec = pod(securityContext={"fsGroup": os.getgid()})
    volumes.prepare(plan_pod(spec, "edge-1", store.get))
    volume = volumes.pod_dir("u1") / "volumes" / "s"
    assert (volume / "a").read_text() == "1"
    assert (volume / "labels").read_text() == 'app="p"'
    before = snapshot(volume)
    volumes.prepare(plan_pod(spec, "edge-1", store.get))  # planned again (say a token or an annotation moved)
    assert snapshot(volume) == before

    a_inode = (volume / "a").stat().st_ino
    spec["metadata"]["labels"] = {"app": "p", "tier": "b"}
    volumes.prepare(plan_pod(spec, "edge-1", store.get))
    assert (volume / "labels").read_text() == 'app="p"\ntier="b"'
    assert (volume / "a").stat().st_ino == a_inode  # the secret's files were linked, not written again

    planned = plan_pod(spec, "edge-1", store.get)
    whole, one = volumes.mounts(planned, planned.containers[0])
    assert whole.source == str(volume)
    assert whole.read_only
    # A subPath is the payload's file itself, as kubelet mounts it: not a symlink the container cannot follow.
    assert Path(one.source).parent == payload_dir(volume)
    assert Path(one.source).name == "a"


def test_a_path_starting_with_two_dots_is_refused_by_name() -> None:
    spec = pod()
    spec["spec"]["volumes"] = [{"name": "s", "secret": {"secretName": "s", "items": [{"key": "a", "path": "..data"}]}}]
    store = {ResourceKey("ns", "secret", "s"): secret({"a": "1"})}
    with pytest.raises(PodSpecError, match=r"volume path '..data' must be relative, without '..' and not starting"):
        plan_pod(spec, "edge-1", store.get)


def test_a_kept_manifest_spares_reading_the_files_back_until_data_changes_under_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = tmp_path / "cfg"
    files = {f"k{i}": (f"value {i}".encode(), 0o644) for i in range(5)}
    manifest = write_files(volume, files).manifest

    def no_reading(_path: Path) -> bytes:
        raise AssertionError("read back although the manifest was kept")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    before = snapshot(volume)
    update = write_files(volume, files, known=manifest)
    assert not update.switched
    assert snapshot(volume) == before
    update = write_files(volume, {**files, "k5": (b"new", 0o644)}, known=update.manifest)
    assert update.written == ["k5"]
    assert sorted(update.linked) == sorted(files)
    monkeypatch.undo()
    assert (volume / "k5").read_bytes() == b"new"
    # A manifest of a payload ..data no longer names (another writer, a restart): the files are read back.
    update = write_files(volume, files, known=manifest)
    assert update.removed == ["k5"]
    assert update.written == []
    assert not (volume / "k5").exists()
