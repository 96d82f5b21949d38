"""The container files: Dockerfile, docker-compose.yml, the shipped jobs files, and the image's
entry point run as the image would run it, with no Docker engine.

The entry point test starts the installed `coda-sync` script with the image's `CMD`, the
environment that the Dockerfile and the compose file set, and the paths the image uses
(`/app`, `/run/secrets`, the data directory) moved into a temporary folder.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from worker_processes import DOC, TOKEN, WorkerProcess, runs, wait_for

from worker.config import load_config
from worker.emulator import CodaEmulator

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("coda-sync")
# The worker's `environment` in docker-compose.yml, checked against the file when PyYAML is there.
COMPOSE_WORKER_ENV = {
    "CODA_SYNC_DATABASE_URL_FILE": "/run/secrets/database_url",
    "CODA_SYNC_LOG_FORMAT": "json",
}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), " ".join(arguments.split())))
    return instructions


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def instruction(keyword: str) -> str:
    matches = [arguments for name, arguments in dockerfile_instructions() if name == keyword]
    assert len(matches) == 1, f"expected one {keyword} in the Dockerfile, found {len(matches)}"
    return matches[0]


def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_dockerfile_installs_dependencies_before_code() -> None:
    steps = dockerfile_instructions()
    copies = [(index, arguments) for index, (keyword, arguments) in enumerate(steps) if keyword == "COPY"]
    installs = [
        index
        for index, (keyword, arguments) in enumerate(steps)
        if keyword == "RUN" and "pip install" in arguments
    ]

    assert instruction("FROM") in ("python:3.11-slim", "python:3.12-slim")
    assert copies[0][1] == "pyproject.toml README.md ./"
    assert copies[1][1] == "worker ./worker"
    assert copies[0][0] < installs[0] < copies[1][0] < installs[1]
    assert "--no-deps" in steps[installs[1]][1]


def test_dockerfile_runs_unprivileged_with_health_check() -> None:
    user = instruction("USER")

    assert user.split(":")[0] not in ("0", "root")
    assert instruction("ENTRYPOINT") == '["coda-sync"]'
    assert instruction("CMD") == '["run"]'
    assert instruction("HEALTHCHECK").endswith('CMD ["coda-sync", "health"]')
    assert image_env()["CODA_SYNC_DATA_DIR"] == "/var/lib/coda-sync"
    assert "chown coda-sync:coda-sync /var/lib/coda-sync" in " ".join(a for _, a in dockerfile_instructions())


def test_dockerignore_keeps_build_inputs() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {".git", ".venv", "secrets", "tests", ".env"} <= ignored
    assert not {"worker", "pyproject.toml", "README.md"} & ignored


def test_compose_gates_worker_on_healthy_postgres() -> None:
    services = compose()["services"]
    postgres, worker = services["postgres"], services["worker"]

    assert postgres["image"] == "postgres:17"
    assert "pg_isready" in postgres["healthcheck"]["test"][1]
    assert any(volume.startswith("postgres-data:") for volume in postgres["volumes"])
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "ports" not in postgres
    assert worker["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert worker["init"] is True
    assert worker["stop_grace_period"] == "10s"
    assert worker["restart"] == "unless-stopped"
    assert worker["healthcheck"]["test"] == ["CMD", "coda-sync", "health"]
    assert "./config:/app/config:ro" in worker["volumes"]


def test_compose_passes_secrets_as_files() -> None:
    document = compose()
    worker = document["services"]["worker"]
    jobs = tomllib.loads((ROOT / "config" / "jobs.toml").read_text(encoding="utf-8"))

    assert worker["environment"] == COMPOSE_WORKER_ENV
    assert set(worker["secrets"]) == {"database_url", "coda_token"}
    assert set(document["secrets"]) == {"database_url", "coda_token", "postgres_password"}
    assert all(entry["file"].startswith("./secrets/") for entry in document["secrets"].values())
    assert jobs["jobs"][0]["token_file"] == "/run/secrets/coda_token"


@pytest.mark.parametrize("name", ["jobs.toml", "example.toml"])
def test_shipped_jobs_files_load(name: str) -> None:
    config = load_config(ROOT / "config" / name, environ={"CODA_TOKEN_CRM": "tok-example-0000"})

    assert config.jobs
    assert all(job.doc_id and job.table_id for job in config.jobs)


def test_entry_point_runs_as_in_container(coda: CodaEmulator, database_url: str, tmp_path: Path) -> None:
    moved = {"/app": tmp_path / "app", "/run/secrets": tmp_path / "secrets", "/var/lib": tmp_path / "lib"}

    def host_path(path: str) -> str:
        for prefix, folder in moved.items():
            if path.startswith(prefix + "/"):
                return str(folder / path.removeprefix(prefix + "/"))
        return path

    shipped = tomllib.loads((ROOT / "config" / "jobs.toml").read_text(encoding="utf-8"))
    job = shipped["jobs"][0]
    (tmp_path / "app" / "config").mkdir(parents=True)
    (tmp_path / "secrets").mkdir()
    Path(host_path(job["token_file"])).write_text(TOKEN + "\n", encoding="utf-8")
    Path(host_path("/run/secrets/database_url")).write_text(database_url + "\n", encoding="utf-8")
    (tmp_path / "app" / "config" / "jobs.toml").write_text(
        f'[[jobs]]\nname = "{job["name"]}"\ndoc_id = "{DOC}"\ntable_id = "grid-T1"\n'
        f'token_file = "{host_path(job["token_file"])}"\n',
        encoding="utf-8",
    )
    env = {"PATH": str(SCRIPT.parent), "CODA_API_BASE_URL": coda.base_url}
    env.update({name: host_path(value) for name, value in image_env().items()})
    env.update({name: host_path(value) for name, value in COMPOSE_WORKER_ENV.items()})

    command = [str(SCRIPT), *json.loads(instruction("CMD"))]
    worker = WorkerProcess(env, tmp_path / "worker.log", command=command)
    try:
        wait_for(lambda: runs(database_url, job["name"]), 30, f"the entry point did not run:\n{worker.log()}")
        health_command = json.loads(instruction("HEALTHCHECK").split("CMD ", 1)[1])
        health = subprocess.run(
            health_command, env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path / "app"
        )
        worker.send(signal.SIGTERM)
        code = worker.wait(timeout=15)
    finally:
        worker.kill()

    assert health.returncode == 0, health.stderr
    assert code == 0
    assert runs(database_url, job["name"])[0][2] == "succeeded"
    assert all(json.loads(line) for line in worker.log().splitlines())
    assert TOKEN not in worker.log()
