"""Make the archives in this folder with the greenaudit of the commit that wrote each revision.

    python tests/data/make_archives.py

For each archive it extracts that commit's tree (``git archive``) to a temporary folder, imports
greenaudit from there (the installed packages serve its dependencies), seeds one project through
that version's own API on a fresh SQLite database, and runs that version's ``export_project``.
The seed is the same for every revision, so the test can check one set of hand-worked figures
(tests/data/README.md).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parent.parent
#: archive file -> the commit whose migrations end at that revision
ARCHIVES = {
    # The first commit with greenaudit export; its migrations end at 0006.
    "archive-rev0006.zip": "d16dde6f9e49b9d0a784502b655b3c2efa6362fe",
    # main when cross-revision import was written; its migrations end at 0007.
    "archive-rev0007.zip": "4ef08aa",
}

SEED = r'''
import importlib.abc, importlib.util, sys
from pathlib import Path

tree, out = Path(sys.argv[1]), Path(sys.argv[2])
packages = {"greenaudit": "greenaudit", "greenaudit.api": "api",
            "greenaudit.migrations": "migrations", "greenaudit.dashboards": "dashboards"}


class Tree(importlib.abc.MetaPathFinder):
    """Import greenaudit from the extracted commit, not from the installed one."""

    def find_spec(self, name, path=None, target=None):
        if name not in packages:
            return None  # subpackages follow their parent's __path__, in the tree
        folder = tree / packages[name]
        return importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


sys.meta_path.insert(0, Tree())
from fastapi.testclient import TestClient
from greenaudit.api import archive
from greenaudit.api.app import create_app
from greenaudit.api.db import make_engine
from greenaudit.api.migrate import upgrade
from greenaudit.settings import Settings

assert archive.__file__.startswith(str(tree)), archive.__file__
ADMIN = "archive-fixture-admin-token-0123456789"
settings = Settings(database_url=f"sqlite:///{out.with_suffix('.db')}", admin_token=ADMIN,
                    alert_interval_s=3600)
engine = make_engine(settings)
upgrade(engine)
RUN_A = "00000000-0000-4000-8000-00000000000a"
RUN_B = "00000000-0000-4000-8000-00000000000b"


def sample(seq, gpu_kwh=0.004, gpu_count=2):
    minute = 10 * 60 + seq
    return {"rank": 0, "seq": seq,
            "t_start": f"2026-12-01T{minute // 60:02d}:{minute % 60:02d}:00+00:00",
            "t_end": f"2026-12-01T{(minute + 1) // 60:02d}:{(minute + 1) % 60:02d}:00+00:00",
            "cpu_kwh": 0.001, "cpu_w": 60.0, "cpu_method": "rapl",
            "gpu_kwh": gpu_kwh, "gpu_w": 240.0, "gpu_method": "nvml-counter",
            "gpu_count": gpu_count, "ram_kwh": 0.0005, "ram_w": 30.0,
            "ram_method": "codecarbon", "step": seq * 10}


def run(run_id, **extra):
    return {"id": run_id, "name": extra.pop("name"), "kind": "train", "model": "resnet18",
            "dataset": "cifar10", "task": "classification", "primary_metric": "accuracy",
            "country_iso": "FRA", "carbon_intensity_g_per_kwh": 50.0,
            "carbon_intensity_source": "archive fixture", "pue": 1.2,
            "started_at": "2026-12-01T10:00:00+00:00", "meta": {"lr": 0.1, "note": "première"},
            "hardware": {"node": "node-1", "gpu_count": 2, "gpu_model": "H100"}, **extra}


with TestClient(create_app(settings, engine)) as client:
    def post(path, body, headers):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        return response.json()

    created = post("/api/v1/projects", {"name": "archived", "budget_kg_co2": 25.0},
                   {"Authorization": f"Bearer {ADMIN}"})
    write = {"Authorization": f"Bearer {created['write_key']['key']}"}
    post("/api/v1/runs", run(RUN_A, name="pretrain", group="sweep-1"), write)
    post("/api/v1/runs", run(RUN_B, name="finetune", kind="finetune", parent_run_id=RUN_A),
         write)
    post(f"/api/v1/runs/{RUN_A}/energy", {"samples": [sample(s) for s in range(4)]}, write)
    post(f"/api/v1/runs/{RUN_B}/energy",
         {"samples": [sample(s, gpu_kwh=0.002, gpu_count=1) for s in range(2)]}, write)
    points = [{"name": "accuracy", "step": s, "epoch": s, "value": v,
               "time": f"2026-12-01T10:0{s}:30+00:00"} for s, v in ((1, 0.5), (2, 0.6), (3, 0.7))]
    post(f"/api/v1/runs/{RUN_A}/metrics", {"points": points}, write)
    post(f"/api/v1/runs/{RUN_A}/finish",
         {"ended_at": "2026-12-01T10:04:00+00:00", "duration_s": 240.0}, write)
    post("/api/v1/datasets/profiles", {"name": "cifar10", "num_classes": 10}, write)
summary = archive.export_project(engine, "archived", out)
print(out.name, summary.schema_revision, summary.rows)
'''


def main() -> None:
    for name, commit in ARCHIVES.items():
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "tree"
            tree.mkdir()
            tar = subprocess.run(
                ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=tar, check=True)
            out = Path(tmp) / name
            subprocess.run([sys.executable, "-c", SEED, str(tree), str(out)], check=True)
            (HERE / name).write_bytes(out.read_bytes())


if __name__ == "__main__":
    main()
