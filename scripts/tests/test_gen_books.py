"""``python -m scripts.gen_books``, the command line of be.sample_books's generator."""

import sqlite3
import subprocess
import sys
from pathlib import Path

from be.sample_books import iter_books

REPO = Path(__file__).resolve().parents[2]


def test_command_line(tmp_path):
    out = tmp_path / "cli.db"
    out.write_bytes(b"stale")
    result = subprocess.run(
        [sys.executable, "-m", "scripts.gen_books", str(out), "--rows", "25", "--seed", "5"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    assert len(result.stdout.strip().splitlines()) == 1
    assert "25" in result.stdout
    conn = sqlite3.connect(out)
    try:
        written = conn.execute("SELECT * FROM book ORDER BY rowid").fetchall()
    finally:
        conn.close()
    assert written == [tuple(b.values()) for b in iter_books(25, seed=5)]
