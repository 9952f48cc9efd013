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
