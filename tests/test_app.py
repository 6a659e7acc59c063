"""The app through its real API (gradio_client against a server on 127.0.0.1)."""

import socket
import time

import pytest

import app
from bench.hostile import checkpoint_cases, image_cases, write
from tests.conftest import small_checkpoint

EXAMPLE = "assets/examples/photos/cat.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    demo = app.build()
    demo.queue(default_concurrency_limit=2, max_size=128)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        max_file_size="5mb",
        allowed_paths=[str(app.ASSETS)],
    )
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app.JOB.stop()
        app.JOB.wait(60)
        demo.close()


def call(client, *args, api_name):
    import os

    from gradio_client import handle_file

    return client.predict(*[handle_file(a) if isinstance(a, str) and os.path.isfile(a) else a for a in args], api_name=api_name)


def test_classify_returns_all_three_heads(client):
    result = call(client, EXAMPLE, "random", 5, api_name="/classify")
    assert set(result["predictions"]) == {"main", "aux1", "aux2"}
    assert all(len(v) == 5 for v in result["predictions"].values())
    assert result["model"] == "random init (untrained)" and any("mean nothing" in n for n in result["notes"])


def test_explore_returns_the_panels(client):
    heads, atlas, contributions, channels, summary, target, branch, caution = call(
        client, EXAMPLE, "random", "(top class)", "cam", "Inferno", 0.6, "inception4c.branch2", api_name="/explore"
    )
    assert atlas.count('class="gx-cell') == 36 and atlas.count('src="data:image/png;base64,') == 36
    assert heads.count('class="gx-head"') == 3 and channels.count('class="gx-cell"') == 16
    assert contributions.count("<td") == 36
    assert "Main head" in summary and "inception4c.branch2" in summary
    assert target == "(top class)" and branch == "inception4c.branch2" and caution == ""  # a photo on an ImageNet-shaped model


def test_every_hostile_image_gets_a_clear_message_or_a_conversion(client, tmp_path):
    from gradio_client.exceptions import AppError

    outcomes = []
    for case, path in write(image_cases(), tmp_path / "hostile"):
        try:
            result = call(client, str(path), "random", 3, api_name="/classify")
            outcomes.append((case.name, "ok" if result["predictions"]["main"] else "empty"))
        except AppError as error:
            message = str(error)
            assert "Traceback" not in message and message.strip(), case.name
            outcomes.append((case.name, message))
    for (name, outcome), case in zip(outcomes, image_cases()):
        if case.expected == "ok":
            assert outcome == "ok", f"{name}: {outcome}"
        else:
            assert case.expected in outcome, f"{name}: expected '{case.expected}' in '{outcome}'"
    # and the app still serves
    assert call(client, EXAMPLE, "random", 1, api_name="/classify")["predictions"]["main"]


def test_uploads_over_the_size_limit_are_refused(client, tmp_path):
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + b"\x00" * (6 * 2**20))
    with pytest.raises(Exception) as error:
        call(client, str(big), "random", 3, api_name="/classify")
    assert "Traceback" not in str(error.value)


def test_checkpoint_uploads(client, tmp_path):
    from gradio_client.exceptions import AppError

    good = small_checkpoint(tmp_path / "mine.safetensors")
    choices, banner = call(client, str(good), api_name="/upload_checkpoint")
    assert "mine.safetensors" in banner
    for case, path in write(checkpoint_cases(good.read_bytes()), tmp_path / "hostile-ckpt"):
        renamed = path.with_name(case.name)
        path.rename(renamed)
        with pytest.raises(AppError, match=case.expected):
            call(client, str(renamed), api_name="/upload_checkpoint")


def test_model_choices_cannot_reach_outside_the_runs_folder(client):
    from gradio_client.exceptions import AppError

    for choice in ("runs:../../etc/passwd", "/etc/passwd", "runs:../app.py"):
        with pytest.raises(AppError, match="runs folder|unknown model"):
            call(client, EXAMPLE, choice, 3, api_name="/classify")


def test_a_checkpoint_in_the_runs_folder_is_offered_and_explorable(client):
    from googlenet.weights import runs_dir

    small_checkpoint(runs_dir() / "mini" / "last.safetensors")
    values = [v for _, v in app.HUB.choices()]
    assert "runs:mini/last.safetensors" in values
    heads, atlas, *_, target, branch, caution = call(
        client,
        "assets/examples/cifar/cat-1.png",
        "runs:mini/last.safetensors",
        "cat",
        "signed",
        "Viridis",
        0.4,
        "inception5b.branch1",
        api_name="/explore",
    )
    assert "cat" in heads and "gx-signed" in atlas and target == "cat" and branch == "inception5b.branch1"
    # a photo on a 32×32 CIFAR model gets a one-line caution
    *_, caution = call(
        client, EXAMPLE, "runs:mini/last.safetensors", "(top class)", "cam", "Inferno", 0.6, "inception4c.branch2", api_name="/explore"
    )
    assert caution.startswith("⚠️") and "shrunk to 32×32" in caution


def test_training_errors_are_clear(client, tmp_path):
    from gradio_client.exceptions import AppError

    # no data is the state of a fresh clone, not an error: the message line says which button fetches it
    message, _token = call(client, "fast", 1, 64, 0.1, 0.125, "cifar", 0.3, str(tmp_path / "no-data"), api_name="/train_start")
    assert message.startswith("⚠️ **Not started:** CIFAR-10 folder not found") and "Download CIFAR-10" in message
    assert "--download" not in message and not app.JOB.running
    with pytest.raises(AppError, match="lr must be a positive number|less than minimum"):
        call(client, "fast", 1, 64, -1.0, 0.125, "cifar", 0.3, str(tmp_path), api_name="/train_start")


@pytest.mark.slow
def test_classify_keeps_answering_while_training(client, cifar_dir):
    from gradio_client.exceptions import AppError

    message, _token = call(client, "fast", 2, 64, 0.1, 0.125, "cifar", 0.3, str(cifar_dir), api_name="/train_start")
    assert "Started" in message
    try:
        with pytest.raises(AppError, match="already in progress"):
            call(client, "fast", 1, 64, 0.1, 0.125, "cifar", 0.3, str(cifar_dir), api_name="/train_start")
        deadline = time.time() + 120
        while time.time() < deadline and client.predict(api_name="/train_status")["steps_logged"] < 2:
            time.sleep(0.5)
        for _ in range(5):  # the latency while training is measured by python -m bench.app_api
            result = call(client, EXAMPLE, "random", 3, api_name="/classify")
            assert len(result["predictions"]["main"]) == 3
        status = client.predict(api_name="/train_status")
        assert status["running"] and status["steps_logged"] >= 2 and status["loss"] > 0
    finally:
        client.predict(api_name="/train_stop")
        app.JOB.wait(120)
    status = client.predict(api_name="/train_status")
    assert status["state"] == "stopped" and not status["running"]
    assert any(v.endswith("last.safetensors") for _, v in app.HUB.choices())


def test_the_api_page_names_every_parameter_and_output(client):
    import httpx

    info = httpx.get(client.src.rstrip("/") + "/gradio_api/info", timeout=30).json()["named_endpoints"]
    for name, endpoint in info.items():
        # the visitor's token (gr.BrowserState, which takes no label) is named by its parameter: "token"
        for parameter in endpoint["parameters"]:
            assert parameter["component"] == "Browserstate" or not parameter["label"].startswith("parameter_"), (name, parameter["label"])
        for output in endpoint["returns"]:
            assert output["component"] == "Browserstate" or not output["label"].startswith("value_"), (name, output["label"])
    # choices that change at run time (checkpoints, another model's classes) are plain strings
    explore = {p["parameter_name"]: p["python_type"]["type"] for p in info["/explore"]["parameters"]}
    assert explore["model"] == "str" and explore["target"] == "str"
    assert {p["parameter_name"]: p["python_type"]["type"] for p in info["/compare"]["parameters"]}["model_b"] == "str"
