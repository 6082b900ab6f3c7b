"""The build hook: a wheel carries the DMI code generated from schemas/dmi/v1beta1/api.proto (scripts/gen_dmi.py).

Everything else about the package is in pyproject.toml.
"""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithDmi(build_py):
    """Generate before the modules are collected, so that the generated ones are among them."""

    def run(self) -> None:
        runpy.run_path(str(ROOT / "scripts" / "gen_dmi.py"))["generate"](ROOT)
        super().run()


setup(cmdclass={"build_py": BuildPyWithDmi})
