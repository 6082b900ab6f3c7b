"""The CustomResourceDefinitions edgehive installs: KubeEdge's devices.kubeedge.io/v1beta1 (Device, DeviceModel,
and v1.23's DeviceStatus) and rules.kubeedge.io/v1."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

FILES = ("devices.kubeedge.io_devicemodels.yaml", "devices.kubeedge.io_devices.yaml",
         "devices.kubeedge.io_devicestatuses.yaml",
         "rules.kubeedge.io_ruleendpoints.yaml", "rules.kubeedge.io_rules.yaml")


def manifests() -> list[dict[str, Any]]:
    return [yaml.safe_load(resources.files(__package__).joinpath(name).read_text()) for name in FILES]
