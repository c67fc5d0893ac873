"""The batch commands: `dsproc datasets register` then `dsproc run TASK.json`, in-process, no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, PHOTOS


def _dsproc(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSPROC_")}
    return subprocess.run(
        [sys.executable, "-m", "dsproc.cli", *args, "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_register_and_run_a_task_file(tmp_path: Path) -> None:
    images = tmp_path / "d" / "storage" / "bkt" / "photos"
    images.mkdir(parents=True)
    (tmp_path / "d" / "storage" / "bkt" / "out").mkdir()
    for p in sorted(PHOTOS.glob("*.jpg"))[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    reg = _dsproc(
        tmp_path, "datasets", "register", "photos", "/bkt/photos/", "/bkt/out/", "--project", "batch"
    )
    assert reg.returncode == 0, reg.stderr
    dataset_id = json.loads(reg.stdout.strip().splitlines()[-1])["dataset_id"]
    listed = _dsproc(tmp_path, "datasets", "list", "--project", "batch")
    assert dataset_id in listed.stdout

    body = json.loads((EXAMPLES / "create-analyse.json").read_text())
    body["data_source"]["source"] = dataset_id
    del body["version_id"]
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(body))
    run = _dsproc(tmp_path, "run", str(task_file), "--project", "batch")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["status"] == 2 and out["result"]["analysed_count"] == 3

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert _dsproc(tmp_path, "run", str(broken)).returncode == 2
    body["name"] = "other"
    body["data_source"]["source"] = "nosuchdataset000000"
    task_file.write_text(json.dumps(body))
    bad = _dsproc(tmp_path, "run", str(task_file), "--project", "batch")
    assert bad.returncode == 2 and "ModelArts.4352" in bad.stderr


def test_invalid_configuration_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSPROC_")}
    env.update(DSPROC_TASK_TIME_LIMIT_S="5000", DSPROC_VISIBILITY_TIMEOUT_S="3600")
    done = subprocess.run(
        [sys.executable, "-m", "dsproc.cli", "migrate", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "VISIBILITY_TIMEOUT" in done.stderr and "Traceback" not in done.stderr


def test_no_auth_refused_off_loopback(tmp_path: Path) -> None:
    done = _dsproc(tmp_path, "serve", "--host", "0.0.0.0", "--insecure-no-auth")
    assert done.returncode != 0 and "loopback" in done.stderr
