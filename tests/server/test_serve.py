"""qr-edge serve: a real uvicorn server on a loopback port, the real embedded model, real HTTP requests."""

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from qr_edge import Decision  # noqa: E402
from qr_edge.server import create_app  # noqa: E402

from ..conftest import CONVERSATION  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DECISIONS = {d.value for d in Decision}
ALONE = {"messages": [{"role": "user", "content": "How do I install NumPy?"}]}  # no history: no model call


@contextmanager
def serving(app):
    """Run ``app`` on uvicorn in a thread, on a free loopback port bound before it starts (no race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=600) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def client(pool):
    with serving(create_app(pool, max_body_bytes=4096, max_batch=4, queue_size=4, timeout_s=600)) as c:
        yield c


def error_of(response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500 if status is None else response.status_code == status, response.text
    assert "Traceback" not in response.text
    error = response.json()["error"]
    assert error["type"] and error["message"]
    return error


def test_rewrite_returns_the_result_with_decision_and_timings(client):
    r = client.post("/v1/rewrite", json={"messages": CONVERSATION, "id": "c1"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["query"] == "Why is it faster?" and data["rewrite"] and data["decision"] in DECISIONS
    assert data["timings"]["prompt_tokens"] > 0 and data["timings"]["model_calls"] >= 1 and data["id"] == "c1"
    assert 0.0 <= data["confidence"] <= 1.0 and data["queries"][0] == data["rewrite"]


def test_legacy_queries_go_through_the_gate(client):
    r = client.post("/v1/rewrite", json={"queries": ["Python和Java哪个更好？", "它怎么样？"]})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["query"] == "它怎么样？" and data["gate"] is not None and data["decision"] in DECISIONS
    # a model call that wrote the result carries a confidence; a gate decision alone carries none
    assert (data["confidence"] is None) == (data["timings"]["model_calls"] < 3)


def test_batch_puts_an_error_record_in_place_of_each_bad_item(client):
    items = [
        {"messages": CONVERSATION, "id": 1},
        {"messages": [{"role": "robot", "content": "beep"}], "id": 2},
        {"messages": CONVERSATION, "surprise": True},
        {"queries": ["What is NumPy?"], "id": 4},
    ]
    r = client.post("/v1/rewrite/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 4
    assert results[0]["id"] == 1 and results[0]["decision"] in DECISIONS and results[0]["query"] == "Why is it faster?"
    assert results[1]["id"] == 2 and results[1]["error"]["type"] == "InvalidConversationError"
    assert results[2]["error"]["type"] == "InvalidRequestError" and "surprise" in results[2]["error"]["message"]
    assert results[3]["id"] == 4 and results[3]["decision"] == "no_history"
    assert error_of(client.post("/v1/rewrite/batch", json={"items": items + items[:1]}), 413)["type"] == (
        "BatchTooLargeError"
    )


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        ({"messages": CONVERSATION, "adapter": "nope"}, 422, "AdapterError"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 422, "InvalidConversationError"),
        ({"messages": CONVERSATION[:2]}, 422, "InvalidConversationError"),
        ({"messages": [{"role": "user", "content": "   "}]}, 422, "InvalidConversationError"),
        ({"messages": [{"role": "user", "content": 3}]}, 422, "InvalidConversationError"),
        ({"messages": "hello"}, 422, "InvalidConversationError"),
        ({}, 422, "InvalidConversationError"),
        ({"messages": CONVERSATION, "queries": ["a"]}, 422, "InvalidConversationError"),
        ({"queries": "not a list"}, 422, "InvalidRequestError"),
        ({"messages": CONVERSATION, "options": {"temperature": 1}}, 422, "InvalidRequestError"),
        (b'{"messages": [', 400, "InvalidJSONError"),
    ],
    ids=lambda v: None if not isinstance(v, (dict, bytes)) else "",
)
def test_bad_requests_get_typed_json_errors(client, body, status, error_type):
    if isinstance(body, bytes):
        r = client.post("/v1/rewrite", content=body, headers={"Content-Type": "application/json"})
    else:
        r = client.post("/v1/rewrite", json=body)
    assert error_of(r, status)["type"] == error_type


def test_oversized_bodies_get_413_with_or_without_content_length(client):
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    assert error_of(client.post("/v1/rewrite", json=big), 413)["type"] == "PayloadTooLargeError"
    chunked = client.post("/v1/rewrite", content=iter([b"{" + b" " * 3000, b" " * 3000 + b"}"]))
    assert error_of(chunked, 413)["type"] == "PayloadTooLargeError"


def test_health_models_docs_and_unknown_paths(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    models = client.get("/v1/models").json()
    assert models["model"] and models["file"].endswith(".gguf") and models["adapters"] == []
    assert models["default_adapter"] is None and models["prompt_format"] and models["workers"] == 1
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert {"/v1/rewrite", "/v1/rewrite/batch", "/v1/models", "/healthz"} <= set(
        client.get("/openapi.json").json()["paths"]
    )
    assert error_of(client.get("/nowhere"), 404)["type"] == "NotFound"
    assert error_of(client.get("/v1/rewrite"), 405)["type"] == "MethodNotAllowed"


def test_keeps_serving_after_errors(client):
    for _ in range(3):
        error_of(client.post("/v1/rewrite", content=b"{oops", headers={"Content-Type": "application/json"}))
        error_of(client.post("/v1/rewrite", json={"messages": CONVERSATION, "adapter": "nope"}))
    r = client.post("/v1/rewrite", json={"messages": CONVERSATION})
    assert r.status_code == 200 and r.json()["decision"] in DECISIONS


def test_api_key_is_required_for_the_api_but_not_the_static_pages(pool):
    with serving(create_app(pool, api_key="s3cret")) as c:
        for path in ("/healthz", "/", "/docs", "/openapi.json", "/static/playground/playground.js"):
            assert c.get(path).status_code == 200, path
        denied = c.get("/v1/models")
        assert error_of(denied, 401)["type"] == "UnauthorizedError" and denied.headers["www-authenticate"] == "Bearer"
        error_of(c.get("/static/../v1/models"), 401)
        error_of(c.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
        error_of(c.post("/v1/rewrite", json=ALONE), 401)
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        ok = c.post("/v1/rewrite", json=ALONE, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["decision"] == "no_history"


def test_a_full_queue_gets_503_with_retry_after(pool):
    with serving(create_app(pool, queue_size=0, timeout_s=600)) as c:
        batch: dict = {}
        items = [{"messages": CONVERSATION, "id": i} for i in range(4)]  # holds the only rewriter a while
        worker = threading.Thread(target=lambda: batch.update(r=c.post("/v1/rewrite/batch", json={"items": items})))
        worker.start()
        time.sleep(0.3)
        statuses, retry_after = [], None
        while worker.is_alive() and 503 not in statuses:
            r = c.post("/v1/rewrite", json=ALONE)
            statuses.append(r.status_code)
            if r.status_code == 503:
                assert error_of(r, 503)["type"] == "ServerBusyError"
                retry_after = r.headers.get("retry-after")
        worker.join(600)
        statuses.append(batch["r"].status_code)
        assert 503 in statuses, statuses
        assert retry_after is None or retry_after.isdigit()
        if batch["r"].status_code == 200:
            assert [item["id"] for item in batch["r"].json()["results"]] == [0, 1, 2, 3]
        assert c.post("/v1/rewrite", json=ALONE).status_code == 200  # the queue drained: served again


def test_a_slow_request_gets_504_and_the_rewriter_comes_back(pool, client):
    with serving(create_app(pool, timeout_s=0.005)) as c:
        assert error_of(c.post("/v1/rewrite", json={"messages": CONVERSATION}), 504)["type"] == "RequestTimeoutError"
        items = [{"messages": CONVERSATION}] * 2  # a batch answers per item: what finished, then timeout records
        results = c.post("/v1/rewrite/batch", json={"items": items}).json()["results"]
        assert [res["error"]["type"] for res in results] == ["RequestTimeoutError"] * 2
        assert c.get("/healthz").status_code == 200
    r = client.post("/v1/rewrite", json={"messages": CONVERSATION})  # waits for the abandoned call to finish
    assert r.status_code == 200, r.text


def run_cli(*args: str, env: dict | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "qr_edge", *args]
    full_env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=120)


def test_cli_help_lists_the_options():
    proc = run_cli("serve", "--help")
    assert proc.returncode == 0, proc.stderr
    options = "--host --port --model --adapter --workers --api-key QR_EDGE_API_KEY --n-ctx --threads --gpu-layers"
    for option in [*options.split(), "--max-body", "--max-batch", "--queue-size", "--timeout"]:
        assert option in proc.stdout, option


def test_cli_refuses_an_empty_api_key():
    """`--api-key "$KEY"` with KEY unset must not start a service without authentication."""
    for args in (("serve", "--api-key", ""), ("serve", "--api-key", "  ")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "empty" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_cli_stays_light_and_names_the_missing_extra():
    light = run_cli(
        code="import sys, qr_edge, qr_edge.cli; print([m for m in ('fastapi', 'uvicorn') if m in sys.modules])"
    )
    assert light.stdout.strip() == "[]", light.stderr
    blocked = "import sys; sys.modules['fastapi'] = None; sys.argv = ['qr-edge', 'serve']; from qr_edge.cli import main; main()"
    proc = run_cli(code=blocked)
    assert proc.returncode == 4 and "pip install 'qr-edge[server]'" in proc.stderr and "Traceback" not in proc.stderr


def start_cli_server(env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`qr-edge serve` (bare embedded model, one thread) as a process on a free port; returns once /healthz answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = f"serve --port {port} --adapter none --n-examples 0 --n-ctx 2048 --threads 1 --timeout 600".split()
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qr_edge", *args], cwd=ROOT, env=full_env, stderr=subprocess.PIPE, text=True
    )
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    return proc, base


def test_cli_serves_with_the_key_from_the_environment():
    proc, base = start_cli_server({"QR_EDGE_API_KEY": "k3y"})
    try:
        assert proc.poll() is None, "qr-edge serve exited"
        assert httpx.post(f"{base}/v1/rewrite", json=ALONE).status_code == 401
        r = httpx.post(f"{base}/v1/rewrite", json={"messages": CONVERSATION}, headers={"X-API-Key": "k3y"}, timeout=600)
        assert r.status_code == 200 and r.json()["query"] == "Why is it faster?"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr and "qr-edge serve:" in stderr


def test_out_of_the_box_the_server_says_the_adapter_is_merged_and_refuses_the_bare_model():
    """`qr-edge serve` with no model: /v1/models marks the bundled adapter merged; a request for the bare model gets
    a typed 422 (AdapterError), not a traceback; the default still rewrites."""
    from qr_edge import Rewriter
    from qr_edge.server import RewriterPool

    pool = RewriterPool([Rewriter(n_ctx=2048, n_threads=1)])
    with serving(create_app(pool, timeout_s=600)) as c:
        models = c.get("/v1/models").json()
        assert (
            models["adapters"] == [{"name": "default", "file": "smollm2-135m-rewrite.lora.gguf", "merged": True}]
            and models["default_adapter"] == "default"
        )
        assert "+smollm2-135m-rewrite" in models["file"]
        error = error_of(c.post("/v1/rewrite", json={"messages": CONVERSATION, "adapter": None}), 422)
        assert error["type"] == "AdapterError" and "bare base" in error["message"]
        assert "qr-edge serve --adapter none" in error["message"] and "Rewriter" not in error["message"]
        ok = c.post("/v1/rewrite", json={"messages": CONVERSATION})
        assert ok.status_code == 200 and ok.json()["decision"] == "rewritten", ok.text
