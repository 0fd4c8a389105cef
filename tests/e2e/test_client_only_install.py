"""``pip install .`` without extras: the client works, and no server code or generic
top-level module comes with it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

CHECK = textwrap.dedent(
    """
    import importlib.util, json, logging, os, sys, sysconfig
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import greenaudit

    @greenaudit.track(model="tiny", dataset="none")
    def train():
        for epoch in range(2):
            sum(range(200_000))
            greenaudit.current_run().log(epoch=epoch, accuracy=0.5)
        return "done"

    site = sysconfig.get_paths()["purelib"]
    print(json.dumps({
        "returned": train(),
        "result": train.last_run.result.__dict__,
        "fastapi": importlib.util.find_spec("fastapi") is not None,
        "sqlalchemy": importlib.util.find_spec("sqlalchemy") is not None,
        "top_level": sorted(n for n in ("api", "dashboards", "migrations", "tests")
                            if os.path.exists(os.path.join(site, n))),
        "packages": sorted(os.path.relpath(root, site) for root, _, files in
                           os.walk(os.path.join(site, "greenaudit")) if "__init__.py" in files),
    }))
    """
)


def test_client_only_install(tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(REPO)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    home = tmp_path / "home"
    checked = subprocess.run(
        [str(python), "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GREENAUDIT_HOME": str(home)},
    )
    assert checked.returncode == 0, checked.stderr[-3000:]
    report = json.loads(checked.stdout.strip().splitlines()[-1])
    assert report["returned"] == "done"
    assert (report["fastapi"], report["sqlalchemy"]) == (False, False)
    assert report["top_level"] == []
    # Every package of the checkout is in the wheel, under the greenaudit namespace.
    in_checkout = set()
    for top in ("greenaudit", "api", "migrations", "dashboards"):
        for init in (REPO / top).rglob("__init__.py"):
            folder = init.parent.relative_to(REPO).as_posix()
            in_checkout.add(folder if top == "greenaudit" else f"greenaudit/{folder}")
    assert in_checkout <= set(report["packages"]), in_checkout - set(report["packages"])
    result = report["result"]
    assert result["delivered"] is False and result["status"] == "finished"
    spool = Path(result["spool_path"])
    assert spool.parent == home / "spool" and spool.exists()
    ops = [json.loads(line)["op"] for line in spool.read_text().splitlines()]
    assert ops[0] == "create_run" and ops[-1] == "finish_run" and ops.count("metric") == 2
    notices = [line for line in checked.stderr.splitlines() if "no service configured" in line]
    assert len(notices) == 1 and str(spool) in notices[0] and "greenaudit flush" in notices[0]
