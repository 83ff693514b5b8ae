"""``hub demo`` as a user runs it: one command, then the files it names and the way to the live dashboard."""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

HUB = str(Path(sys.executable).with_name("hub"))


def test_hub_demo_writes_and_names_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "my-demo"
    env = {**os.environ, "HUB_SQLITE_SYNCHRONOUS": "NORMAL"}
    began = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    # a folder named relative to where it runs, as `make demo` names hub-demo
    done = subprocess.run([HUB, "demo", "--out", "my-demo", "--months", "2", "--scale", "0.05"], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(out / "hub-demo.db") as conn:  # every message dated as its file would have arrived
        stamps = [row[0] for row in conn.execute("SELECT received_at FROM messages")]
    assert stamps and not [s for s in stamps if dt.datetime.fromisoformat(s[:26]) >= began]
    text = done.stdout
    for label, name in (("dashboard", "dashboard.html"), ("XLSX", "kpis.xlsx"), ("JSON", "kpis.json"),
                        ("onboarding scorecard", "onboarding-scorecard.txt")):
        match = re.search(rf"^{label}:\s+(\S+)$", text, re.M)
        assert match, f"no {label} line in:\n{text}"
        assert Path(match.group(1)) == (out / name).resolve() and Path(match.group(1)).stat().st_size > 0
    # the feeds load clean; then the aesthetics practice's last bundles come again cut short: the console's errors
    assert set(re.findall(r"accepted\s+\d+\s+duplicate \d+\s+error (\d+)", text)) == {"0"}
    assert re.search(r"^carmel-aesthetics\s+resent 3 bundles cut short in transit: error 3$", text, re.M), text
    summary = re.search(r"^mke-skin is onboarding: not ready to go live; unmapped codes: (.+)$", text, re.M)
    assert summary and "MOHS1 (visit_type)" in summary.group(1).split(", "), text
    assert f"HUB_DATABASE_URL=sqlite:///{(out / 'hub-demo.db').resolve()} hub serve" in text
    assert re.search(r"^  hub_[0-9a-f]{12}_\S{20,}$", text, re.M)  # the analyst key for the live dashboard
    assert (out / "feeds" / "lakeshore-derm").is_dir()
    again = subprocess.run([HUB, "demo", "--out", str(out), "--months", "2", "--scale", "0.05"], capture_output=True,
                           text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr  # a second run starts over: no duplicates, no "already registered"
    assert set(re.findall(r"duplicate (\d+)", again.stdout)) == {"0"}
