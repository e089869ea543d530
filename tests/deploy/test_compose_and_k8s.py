"""The container stack: the compose file is valid Compose and every command is a real xaisearch call."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from xaisearch.cli import app

ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` with values from ``env``."""

    def value(match: re.Match) -> str:
        name, whole = match.group(1), match.group(0)
        if name in env:
            return env[name]
        default = re.match(r"\$\{\w+:?-(.*)\}", whole)
        return default.group(1) if default else ""

    return ENV_VAR.sub(value, text.replace("$$", "\0")).replace("\0", "$")


def load_compose() -> dict:
    env = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text(), env))


def assert_real_command(command: list[str]) -> None:
    """``xaisearch <command> ...`` parses with the real CLI (options, arguments), without running it."""
    assert command[0] == "xaisearch", command
    group = typer_click_group()
    name, args = command[1], command[2:]
    assert name in group.commands, f"{name} is not an xaisearch command"
    with group.commands[name].make_context(name, list(args)):
        pass


def typer_click_group():
    import typer.main

    return typer.main.get_command(app)


def test_compose_file_matches_the_compose_specification():
    import jsonschema

    schema_text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    jsonschema.validate(load_compose(), json.loads(schema_text))


def test_every_compose_service_runs_a_real_xaisearch_command():
    services = load_compose()["services"]
    assert {"postgres", "init", "worker-gpu0", "dashboard"} <= set(services)
    for name, service in services.items():
        if name != "postgres":
            assert_real_command(service["command"])


def test_compose_conventions():
    services = load_compose()["services"]
    assert "pg_isready -h 127.0.0.1" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]
    for name in ("worker-gpu0", "worker-gpu1"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"] and len(devices[0]["device_ids"]) == 1
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    raw = (ROOT / "docker-compose.yml").read_text()
    secrets = re.findall(r"^\s*(?:POSTGRES_PASSWORD|PGPASSWORD):\s*(.*)$", raw, flags=re.MULTILINE)
    assert secrets and all(value.startswith("${POSTGRES_PASSWORD:?") for value in secrets)  # only from .env
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("manifest", ["create-job.yaml", "worker-job.yaml", "dashboard.yaml"])
def test_kubernetes_manifests_run_real_commands(manifest):
    documents = list(yaml.safe_load_all((ROOT / "docker" / "k8s" / manifest).read_text()))
    commands = [
        c["command"]
        for d in documents
        if d["kind"] in ("Job", "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert commands
    for command in commands:
        assert_real_command(command)
    if manifest == "worker-job.yaml":
        limits = documents[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits == {"nvidia.com/gpu": 1}


def test_a_misspelt_option_is_caught_by_the_command_check():
    with pytest.raises(Exception, match="No such option: --gpu"):
        assert_real_command(["xaisearch", "worker", "--study", "x", "--storage", "y", "--gpu", "0"])
