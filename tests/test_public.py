"""A public server shared by strangers, through its real API: two gradio_client clients are two
visitors (each Client is its own Gradio session). Also the MCP tools, over streamable HTTP."""

import ast
import base64
import json
import socket
import time
from pathlib import Path

import pytest
import torch

import app
from googlenet.model import GoogLeNet
from googlenet.preprocess import Preprocess
from googlenet.weights import CIFAR10_CLASSES, CheckpointMeta, runs_dir, save_checkpoint
from server.settings import Settings
from tests.conftest import CIFAR_SUBSET
from ui import shared

CAT = "assets/examples/cifar/cat-1.png"
ADMIN = "an operator token of some length"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    meta = CheckpointMeta(CIFAR10_CLASSES, Preprocess(32, 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)))
    return save_checkpoint(path, GoogLeNet(num_classes=10, stem="cifar", width=0.125), meta)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("data-root")
    (root / "cifar10-subset").symlink_to(CIFAR_SUBSET)  # training tests ask for cifar_dir, which skips without it
    size = tiny_checkpoint(tmp_path_factory.mktemp("probe") / "p.safetensors", 0).stat().st_size
    rules = Settings(
        public=True, training="owner", max_epochs=20, max_width=0.25, max_input_size=32, max_batch=256, max_minutes=30.0,
        data_root=root, downloads=True, download_dir=root / "cifar10", upload_quota_mb=1.5 * size / 2**20,
        upload_total_mb=100.0, retention_hours=72.0, mcp=True, admin_token=ADMIN,
    )  # fmt: skip
    saved = (shared._SETTINGS, app.HUB.private_listing, app.HUB.policy, app.HUB.viewer)
    demo = app.build(rules)
    demo.queue(default_concurrency_limit=2, max_size=128)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options(rules))
    try:
        yield f"http://127.0.0.1:{port}/", root
    finally:
        try:
            app.JOB.stop(override=True)
        finally:
            app.JOB.wait(60)
            demo.close()
            shared._SETTINGS, app.HUB.private_listing, app.HUB.policy, app.HUB.viewer = saved


def visitor(url):
    from gradio_client import Client

    return Client(url, verbose=False)


FORM = ("fast", 1, 64, 0.1, 0.125, "cifar", 0.3)


def test_only_the_owner_stops_a_run_even_after_reconnecting(server, cifar_dir):
    from gradio_client.exceptions import AppError

    url, _ = server
    alice, bob = visitor(url), visitor(url)
    message, token = alice.predict(*FORM, "cifar10-subset", 0, None, api_name="/train_start")
    assert "It is yours" in message and token.startswith("v1.")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and alice.predict(api_name="/train_status")["steps_logged"] < 2:
            time.sleep(0.3)
        seen_by_bob = bob.predict(api_name="/train_status")
        assert seen_by_bob["running"] and not seen_by_bob["yours"] and seen_by_bob["owner"].startswith("visitor ")
        assert seen_by_bob["frees_in_s"] is not None and 0 < seen_by_bob["frees_in_s"] <= 30 * 60
        with pytest.raises(AppError, match=f"started by {seen_by_bob['owner']}: only they"):
            bob.predict(None, api_name="/train_stop")
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(AppError, match="only they"):
            bob.predict(forged, api_name="/train_stop")
        with pytest.raises(AppError, match="already in progress.*started by"):
            bob.predict(*FORM, "cifar10-subset", 0, None, api_name="/train_start")
        steps = alice.predict(api_name="/train_status")["steps_logged"]
        deadline = time.time() + 60  # a step takes well under a second, unless the machine is shared
        while time.time() < deadline and alice.predict(api_name="/train_status")["steps_logged"] == steps:
            time.sleep(0.3)
        assert alice.predict(api_name="/train_status")["steps_logged"] > steps  # still training
        assert alice.predict(api_name="/train_status")["yours"]
        # a reload: a new connection (new session) that brings the browser's token back
        reloaded = visitor(url)
        assert reloaded.predict(token, api_name="/train_status")["yours"]
        assert "Stopping" in reloaded.predict(token, api_name="/train_stop")
    finally:
        app.JOB.stop(override=True)
        app.JOB.wait(120)
    assert alice.predict(api_name="/train_status")["state"] == "stopped"


def test_the_operator_token_lifts_the_limits_and_stops_any_run(server, cifar_dir):
    from gradio_client.exceptions import AppError

    url, _ = server
    operator, alice = visitor(url), visitor(url)
    with pytest.raises(AppError, match="not this server's operator token"):
        operator.predict("a guess", None, api_name="/operator_sign_in")
    message, token = operator.predict(ADMIN, None, api_name="/operator_sign_in")
    assert "operator" in message
    try:
        message, _ = operator.predict("fast", 100, 64, 0.1, 0.125, "cifar", 0.3, "cifar10-subset", 0, token, api_name="/train_start")
        assert "100 epochs" in message  # over the limit of 20, allowed to the operator
        with pytest.raises(AppError, match="only they"):
            alice.predict(None, api_name="/train_stop")
        assert "Stopping" in visitor(url).predict(token, api_name="/train_stop")
    finally:
        app.JOB.stop(override=True)
        app.JOB.wait(120)


def test_requests_over_the_limits_name_them_and_no_path_is_mapped(server):
    from gradio_client.exceptions import AppError

    url, _ = server
    bob = visitor(url)
    with pytest.raises(AppError) as refused:
        bob.predict("fast", 100, 64, 0.1, 1.0, "cifar", 0.3, "cifar10-subset", 0, None, api_name="/train_start")
    assert "epochs 100 is over this server's limit of 20 (GOOGLENET_MAX_EPOCHS)" in str(refused.value)
    assert "width 1 is over this server's limit of 0.25 (GOOGLENET_MAX_WIDTH)" in str(refused.value)
    with pytest.raises(AppError, match=r"input size \(pixels\) 224 .* limit of 32"):
        bob.predict("fast", 1, 64, 0.1, 0.125, "imagenet", 0.3, "cifar10-subset", 0, None, api_name="/train_start")
    with pytest.raises(AppError, match=r"wall time \(minutes\) 90 .* limit of 30"):
        bob.predict(*FORM, "cifar10-subset", 90, None, api_name="/train_start")
    answers = set()
    for typed in ("/etc", "/root/.bashrc", "/proc/self/environ", "../../../../etc", "/no/such/folder", str(runs_dir())):
        with pytest.raises(AppError) as refused:
            bob.predict(*FORM, typed, 0, None, api_name="/train_start")
        answers.add(str(refused.value))
    assert len(answers) == 1 and "does not accept folder paths" in answers.pop()
    assert not app.JOB.running


def test_download_cannot_write_outside_the_data_root(server, tmp_path, monkeypatch):
    from ui import train_tab

    url, root = server
    targets = []
    monkeypatch.setattr(train_tab, "download_cifar10", lambda target: targets.append(Path(target)) or Path(target))
    elsewhere = tmp_path / "somewhere-else"
    message = visitor(url).predict(str(elsewhere), None, api_name="/download_cifar10")
    assert targets == [root / "cifar10"] and "dataset “cifar10”" in message
    assert not elsewhere.exists() and targets[0].resolve().is_relative_to(root.resolve())


def test_uploads_are_the_visitors_own_and_within_their_quota(server, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    url, _ = server
    alice, bob = visitor(url), visitor(url)
    first = tiny_checkpoint(tmp_path / "alice-1.safetensors", 1)
    alice.predict(handle_file(str(first)), api_name="/upload_checkpoint")
    mine = [p for p in (runs_dir() / "uploads").rglob("alice-1.safetensors")]
    assert len(mine) == 1 and mine[0].parent.name != "uploads"  # in the visitor's own folder
    choice = "runs:" + mine[0].relative_to(runs_dir()).as_posix()
    with pytest.raises(AppError, match="per-visitor quota"):
        alice.predict(handle_file(str(tiny_checkpoint(tmp_path / "alice-2.safetensors", 2))), api_name="/upload_checkpoint")
    assert len(alice.predict(handle_file(CAT), choice, 3, api_name="/classify")["predictions"]["main"]) == 3
    with pytest.raises(AppError, match="no longer exists"):  # bob cannot load it, even knowing its name
        bob.predict(handle_file(CAT), choice, 3, api_name="/classify")
    # pictures count too (the app's examples do not): noise pictures of 0.27 MB each past the quota
    from PIL import Image

    pictures = []
    for seed in range(int(shared.settings().upload_quota_mb / 0.25) + 1):
        pictures.append(tmp_path / f"noise-{seed}.png")
        Image.fromarray(
            torch.randint(0, 256, (300, 300, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)).numpy()
        ).save(pictures[-1])
    with pytest.raises(AppError, match="per-visitor quota"):
        for path in pictures:
            bob.predict(handle_file(str(path)), None, 1, api_name="/classify")
    assert alice.predict(handle_file(str(pictures[0])), None, 1, api_name="/classify")["predictions"]["main"]  # alice's own count


def test_mcp_lists_the_agent_tools_and_classify_answers_with_three_heads(server):
    import asyncio

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    url, _ = server
    picture = "data:image/png;base64," + base64.b64encode(Path(CAT).read_bytes()).decode()

    async def session():
        async with streamable_http_client(url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as mcp:
                await mcp.initialize()
                tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
                classified = await mcp.call_tool("classify", {"image": picture, "model": "bundled", "topk": 5})
                explored = await mcp.call_tool("explore", {"image": picture, "model": "bundled", "target": "cat"})
                trusted = await mcp.call_tool("trust_map", {"image": picture, "model": "bundled", "method": "saliency"})
                return tools, classified, explored, trusted

    tools, classified, explored, trusted = asyncio.run(session())
    assert set(tools) == {"classify", "explore", "attribute", "knock_out", "trust_map"}  # not the UI's plotly endpoints
    scores = json.loads(trusted.content[-1].text)
    assert scores["method"] == "saliency" and [s["layer"] for s in scores["randomization"]["cascading"]][:2] == ["fc", "inception5b"]
    assert 0 <= scores["deletion_auc"] <= 1 and scores["verdict"]["line"] and "Adebayo" in tools["trust_map"].description
    assert "auxiliary heads" in tools["classify"].description and "36 Inception branches" in tools["explore"].description
    assert "index" in tools["explore"].inputSchema["properties"]["target"]["description"]
    assert not classified.isError
    text = next(c.text for c in classified.content if c.type == "text")
    predictions = ast.literal_eval(text)["predictions"]  # Gradio's MCP bridge sends a queued tool's JSON as a Python repr
    assert set(predictions) == {"main", "aux1", "aux2"} and all(len(top) == 5 for top in predictions.values())
    assert predictions["main"][0]["label"] == "cat"  # the bundled model gets this example right
    kinds = [c.type for c in explored.content]
    assert kinds[0] == "image" and explored.content[0].mimeType == "image/png"
    summary = json.loads(explored.content[-1].text)
    assert summary["target"] == "cat" and len(summary["shares"]) == 36
