"""The deployment files: what docker/compose.yaml runs exists, and the image's build works without Docker.

No container engine runs on the test machines, so the image is built the way its Dockerfile
builds it, step by step: the files its COPY lines name, ``pip wheel`` of them, the wheel
installed into a fresh virtualenv; then that install runs the hub's commands on its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DOCKER = ROOT / "docker"


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_runs_every_role_from_the_one_image() -> None:
    services = _compose()["services"]
    assert {"web", "worker", "mllp", "redis", "postgres"} <= services.keys()
    commands = {name: services[name]["command"][:2] for name in ("web", "worker", "mllp")}
    assert commands == {"web": ["hub", "serve"], "worker": ["hub", "worker"], "mllp": ["hub", "mllp"]}
    for name in ("web", "worker", "mllp"):
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert services[name]["environment"]["HUB_DATABASE_URL"].startswith("postgresql://")
        assert services[name]["environment"]["HUB_REDIS_URL"].startswith("redis://")


def test_every_setting_the_deployment_uses_is_documented() -> None:
    documented = set(re.findall(r"`(HUB_[A-Z_]+)`", (ROOT / "docs" / "settings.md").read_text()))
    used = set(re.findall(r"\b(HUB_[A-Z_]+)\b", (DOCKER / "compose.yaml").read_text()
                          + (DOCKER / "Dockerfile").read_text()))
    used.discard("HUB_DB_PASSWORD")  # the compose file's own variable, for the postgres service
    assert used - documented == set()


def _build_stage_sources() -> list[str]:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    build_stage = dockerfile.split("\nFROM ", 2)[1]
    sources: list[str] = []
    for line in build_stage.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to list the project's files")
def test_the_image_build_installs_a_working_hub(tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    tracked = subprocess.run(["git", "ls-files", *_build_stage_sources()], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked, "the Dockerfile copies nothing the repository holds"
    for name in tracked:  # what a build from a clean checkout sees (no caches, no local files)
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), "."],
                   cwd=context, check=True, capture_output=True, timeout=300)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    (wheel,) = wheels.glob("*.whl")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True,
                               text=True, timeout=600)  # with its dependencies, as the image does
    assert installed.returncode == 0, installed.stderr[-2000:]

    workdir = tmp_path / "run"  # away from the checkout, so nothing is imported from it
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "PYTHONPATH"))}
    env["HUB_DATABASE_URL"] = f"sqlite:///{tmp_path / 'image.db'}"

    def hub(*args: str) -> str:
        done = subprocess.run([str(venv / "bin" / "hub"), *args], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    where = subprocess.run([str(python), "-c", "import hub; print(hub.__file__)"], cwd=workdir, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert str(venv) in where, f"hub imported from {where}, not from the installed wheel"
    plugins = hub("plugins", "list")
    for name in ("hl7v2", "fhir", "csv"):
        assert name in plugins
    hub("practice", "add", "derm-east", "--name", "Derm East")  # every migration, from the wheel
    assert "derm-east" in hub("practice", "list")
    out = tmp_path / "dashboard.html"
    hub("report", "kpis", "--format", "html", "--out", str(out))  # the dashboard's assets are packaged
    assert out.stat().st_size > 10_000
