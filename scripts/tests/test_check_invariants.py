"""``python -m scripts.check_invariants``: the checkout's spelling of be.audit_cli
(the audit itself is tested in be/tests/test_crash.py)."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_script_refuses_without_a_database():
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    proc = subprocess.run([sys.executable, "-m", "scripts.check_invariants"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "MONGODB_URI" in proc.stderr


def test_the_script_audits_a_data_folder_and_refuses_one_in_use(tmp_path):
    from be.embedded import EmbeddedEngine
    engine = EmbeddedEngine(str(tmp_path))
    engine.database("bookstore").users.insert_one({
        "_id": "u", "balance": 5, "deposited": 5, "withdrawn": 0, "ops": []})
    args = [sys.executable, "-m", "scripts.check_invariants", "--data-dir", str(tmp_path)]
    busy = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 2 and "is in use by another bookstore server" in busy.stderr
    engine.close()
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"audited data folder {tmp_path}: 1 users" in done.stdout
    assert "no violations" in done.stdout
