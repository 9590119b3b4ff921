"""The deployment files: the Dockerfile passes hadolint (and, where a Docker engine answers, builds and its
container answers `/healthz`), the systemd unit passes `systemd-analyze verify`, and the commands the image, the
unit and the cron line run are commands `invoiced-keap` accepts. Each tool-bound check skips, saying why, where
its tool is missing."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from invoiced_keap.cli import app
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "invoiced-keap.service"
CRON = ROOT / "deploy" / "invoiced-keap.cron"
TOOLS = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(TOOLS))
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    installed = TOOLS / "invoiced-keap"  # where the unit says /opt/invoiced-keap/bin/invoiced-keap
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/invoiced-keap/bin/invoiced-keap", str(installed)))
    result = subprocess.run([tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def commands() -> dict[str, list[str]]:
    """The argument lists the image, the unit and the cron line give `invoiced-keap`."""
    docker = re.findall(r'^(ENTRYPOINT|CMD) (\[.*\])$', DOCKERFILE.read_text(), re.MULTILINE)
    image = [arg for _, exec_form in docker for arg in eval(exec_form)]  # noqa: S307 - JSON arrays from our own file
    unit = shlex.split(re.search(r"^ExecStart=(.*)$", UNIT.read_text(), re.MULTILINE)[1])  # type: ignore[index]
    cron_line = next(line for line in CRON.read_text().splitlines() if line and not line.startswith("#"))
    cron = shlex.split(cron_line.split("&&", 1)[1].split(">>")[0])
    return {"image": image, "unit": unit, "cron": cron}


@pytest.mark.parametrize("where", ["image", "unit", "cron"])
def test_the_commands_they_run_are_accepted(where: str) -> None:
    command = commands()[where]
    arguments = command[command.index(next(a for a in command if a.endswith("invoiced-keap"))) + 1:]
    result = CliRunner().invoke(app, [*arguments, "--help"])
    assert result.exit_code == 0, (arguments, result.output)


def test_the_image_builds_and_run_in_it_answers_healthz(tmp_path: Path) -> None:
    docker = tool("docker")
    if subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers here (only the client is installed)")
    tag = "invoiced-keap-test:latest"
    subprocess.run([docker, "build", "-t", tag, str(ROOT)], check=True, capture_output=True)
    invoiced, keap = InvoicedEmulator(api_key=API_KEY), KeapEmulator(api_key=API_KEY)
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server, \
            socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        name = f"invoiced-keap-test-{port}"
        settings = {"INVOICED_API_KEY": API_KEY, "INVOICED_API_URL": invoiced_server.url, "KEAP_API_KEY": API_KEY,
                    "KEAP_API_URL": f"{keap_server.url}/crm/rest", "INVOICED_KEAP_PORT": str(port),
                    "INVOICED_KEAP_STATUS_TOKEN": "status-token", "INVOICED_KEAP_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        environment = [option for key, value in settings.items() for option in ("-e", f"{key}={value}")]
        subprocess.run([docker, "run", "-d", "--name", name, "--network", "host", *environment, tag],
                       check=True, capture_output=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "run in the container never answered /healthz with 200"
                time.sleep(0.5)
        finally:
            subprocess.run([docker, "rm", "-f", name], capture_output=True)


@pytest.mark.parametrize("where", ["image", "unit", "cron"])
def test_they_log_what_the_sync_does(where: str) -> None:
    """JSON at INFO: the pass, write and progress events (at the default WARNING level nothing is logged)."""
    command = commands()[where]
    assert "--log-level" in command and command[command.index("--log-level") + 1] == "INFO", command


def test_the_cron_line_syncs_with_nothing_but_the_documented_env_file(tmp_path: Path) -> None:
    """cron's environment is nearly empty: `env -i` and the line's own command, with the paths moved under
    `tmp_path`; the secrets come only from the env file as README writes it."""
    invoiced, keap = InvoicedEmulator(api_key=API_KEY), KeapEmulator(api_key=API_KEY)
    invoiced.seed({"customers": [{"name": "Acme", "type": "company"}]})
    moved = {"/opt/invoiced-keap/bin/invoiced-keap": str(TOOLS / "invoiced-keap"), "/var/lib/": f"{tmp_path}/var/lib/",
             "/var/log/": f"{tmp_path}/var/log/", "/etc/invoiced-keap/": f"{tmp_path}/etc/invoiced-keap/"}
    cron_line = next(line for line in CRON.read_text().splitlines() if line and not line.startswith("#"))
    minute, hour, day, month, weekday, user, command = cron_line.split(maxsplit=6)
    assert user == "invoiced-keap"
    for path, there in moved.items():
        command = command.replace(path, there)
    for directory in ("var/lib/invoiced-keap", "var/log/invoiced-keap", "etc/invoiced-keap"):
        (tmp_path / directory).mkdir(parents=True)
    (tmp_path / "etc/invoiced-keap/invoiced-keap.toml").write_text('flows = ["companies"]\nkeap_hooks = false\n')
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        (tmp_path / "etc/invoiced-keap/env").write_text(
            f"INVOICED_API_KEY={API_KEY}\nINVOICED_API_URL={invoiced_server.url}\n"
            f"KEAP_API_KEY={API_KEY}\nKEAP_API_URL={keap_server.url}/crm/rest\n")
        result = subprocess.run(["env", "-i", "/bin/sh", "-c", command], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert [record["company_name"] for record in keap.store.records("companies")] == ["Acme"]
    log = (tmp_path / "var/log/invoiced-keap/sync.log").read_text().splitlines()
    events = [json.loads(line).get("event") for line in log if line.startswith("{")]  # stdout's tables go there too
    assert "pass.finished" in events and "create" in events, log
    assert (tmp_path / "var/lib/invoiced-keap/invoiced-keap.db").exists()
