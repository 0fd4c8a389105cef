"""Archive import: time to verify and insert 100,000 samples, and how fast a 1 GiB zip bomb
and a 1 GiB manifest are refused. Run from the repository root:
``python benchmarks/archive_sizes.py`` (figures in docs/RELIABILITY.md, "Hostile archives").
"""

import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from greenaudit.api import archive
from greenaudit.api.app import create_app
from greenaudit.api.db import make_engine
from greenaudit.api.migrate import upgrade
from greenaudit.settings import Settings

sys.path.insert(0, ".")
from tests.api.helpers import run_body

tmp = Path(tempfile.mkdtemp())
url = f"sqlite:///{tmp / 'src.db'}"
s = Settings(
    database_url=url, admin_token="measure-admin-token-0123456789abcdefghij", alert_interval_s=3600
)
e = make_engine(s)
upgrade(e)
with TestClient(create_app(s, e)) as c:
    r = c.post(
        "/api/v1/projects",
        json={"name": "big"},
        headers={"Authorization": "Bearer " + "measure-admin-token-0123456789abcdefghij"},
    ).json()
    w = {"Authorization": f"Bearer {r['write_key']['key']}"}
    run = c.post("/api/v1/runs", json=run_body(), headers=w).json()
    for b in range(20):
        samples = [
            {
                "rank": 0,
                "seq": b * 5000 + i,
                "t_start": "2026-12-01T10:00:00+00:00",
                "t_end": "2026-12-01T10:00:10+00:00",
                "cpu_kwh": 1e-5,
                "cpu_method": "rapl",
                "gpu_kwh": 4e-5,
                "gpu_method": "nvml-counter",
                "gpu_count": 2,
                "step": i,
            }
            for i in range(5000)
        ]
        assert (
            c.post(
                f"/api/v1/runs/{run['id']}/energy", json={"samples": samples}, headers=w
            ).status_code
            == 200
        )
t = time.perf_counter()
archive.export_project(e, "big", tmp / "big.zip")
print(
    "export 100k samples",
    round(time.perf_counter() - t, 2),
    "s",
    (tmp / "big.zip").stat().st_size,
    "bytes",
)
t = time.perf_counter()
with archive.open_archive(tmp / "big.zip") as v:
    t1 = time.perf_counter()
    print("verify (all checks)", round(t1 - t, 2), "s")
    e2 = make_engine(Settings(database_url=f"sqlite:///{tmp / 'dst.db'}"))
    upgrade(e2)
    t2 = time.perf_counter()
    archive.import_archive(e2, v)
    print("insert", round(time.perf_counter() - t2, 2), "s")


def padded_copy(out: Path, member: str, pad: bytes, then_original: bool) -> Path:
    """big.zip with ``member`` written as 1 GiB of ``pad``, then its own bytes if asked."""
    with (
        zipfile.ZipFile(tmp / "big.zip") as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for i in src.infolist():
            if i.filename != member:
                dst.writestr(i.filename, src.read(i))
                continue
            with dst.open(member, "w", force_zip64=True) as m:
                chunk = pad * (1 << 20)
                for _ in range(1024):
                    m.write(chunk)
                if then_original:
                    m.write(src.read(i))
    return out


def time_refusal(path: Path, what: str) -> None:
    """Print how long the import's checks take to refuse ``path``."""
    t = time.perf_counter()
    try:
        with archive.open_archive(path):
            pass
    except archive.ArchiveError as err:
        print(what, "refused in", round(time.perf_counter() - t, 3), "s:", err)


# bomb: 1 GiB zeros
bomb = padded_copy(tmp / "bomb.zip", "run.parquet", b"\0", then_original=False)
print("bomb size", bomb.stat().st_size)
time_refusal(bomb, "bomb")
huge = padded_copy(tmp / "huge.zip", "manifest.json", b" ", then_original=True)
print("huge manifest zip size", huge.stat().st_size)
time_refusal(huge, "huge manifest")
print("peak RSS MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
