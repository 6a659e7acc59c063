"""The newcomer's path: README's install-and-run command in a fresh clone and a fresh venv, then
one classification through the API."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("python app.py") and "pip install -r requirements.txt" in commands[0]
    assert "python -m pytest" in commands[1] and "requirements-dev.txt" in commands[1]


@pytest.mark.slow
def test_readme_install_and_run_in_a_fresh_clone(tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: nothing to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GOOGLENET_OFFLINE": "1",
        "GOOGLENET_RUNS": str(tmp_path / "runs"),
    }
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if "venv" not in p)
    log = open(tmp_path / "newcomer.log", "w")
    proc = subprocess.Popen(
        ["bash", "-c", readme_commands()[0]], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.time() + 900  # a cold pip install of torch takes minutes
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the README command exited ({proc.returncode}): {(tmp_path / 'newcomer.log').read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("the app never started listening")
        from gradio_client import Client, handle_file

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        result = client.predict(handle_file(str(clone / "assets/examples/cifar/cat-1.png")), None, 3, api_name="/classify")
        assert set(result["predictions"]) == {"main", "aux1", "aux2"}
        assert result["model"]  # the banner's name for the live weights
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
