"""The distribution lists every package of the source tree, so a wheel install is complete."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    # A package mapped to its own folder (greenaudit.api -> api/) is also found under its parent.
    found = {package for package in found if not package.startswith("greenaudit.greenaudit")}
    missing = sorted(found - listed)
    assert missing == [], f"packages missing from [tool.setuptools] packages: {missing}"
