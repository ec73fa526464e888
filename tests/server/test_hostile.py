"""The hostile probes of qr-edge serve: each answers with its documented 4xx or a batch's per-item error record,
never a 500; against a real uvicorn server on loopback and the real embedded model."""

import json
import signal
import socket
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from qr_edge.errors import CancelledError  # noqa: E402
from qr_edge.server import create_app  # noqa: E402

from ..conftest import CONVERSATION  # noqa: E402
from .test_serve import ALONE, error_of, serving, start_cli_server  # noqa: E402

JSON = {"Content-Type": "application/json"}


def long_conversation(tag: str, turns: int = 6) -> list[dict[str, str]]:
    """About 1,500 prompt tokens of history: several forward passes of prompt, seconds on one thread."""
    msgs = []
    for i in range(turns):
        text = " ".join(f"Fact {tag}-{i}-{k}: the {tag} river flows past town {k}." for k in range(20))
        msgs += [{"role": "user", "content": text}, {"role": "assistant", "content": f"Noted {i}."}]
    return [*msgs, {"role": "user", "content": "Which town is the last one?"}]


@pytest.fixture(scope="module")
def client(pool):
    with serving(create_app(pool, max_body_bytes=3 << 20, timeout_s=600, body_timeout_s=1)) as c:
        yield c


def raw(client, path: str, body: str, headers: dict | None = None):
    return client.post(path, content=body.encode("utf-8"), headers={**JSON, **(headers or {})})


def test_a_lone_surrogate_in_the_id_is_echoed_and_in_an_options_key_is_a_422(client):
    alone = json.dumps(ALONE["messages"])
    r = raw(client, "/v1/rewrite", f'{{"messages": {alone}, "id": "\\ud800"}}')
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "\ud800"  # written back escaped: ASCII JSON, never a failed encoder
    r = raw(client, "/v1/rewrite", f'{{"messages": {alone}, "options": {{"\\ud800": 1}}}}')
    assert error_of(r, 422)["type"] == "InvalidRequestError"


def test_nan_and_deep_ids_are_refused_per_item_never_a_500(client):
    r = raw(client, "/v1/rewrite/batch", '{"items": [{"messages": [], "id": NaN}, {"messages": [], "id": Infinity}]}')
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert all(res["error"]["type"] == "InvalidRequestError" and "id" not in res for res in results)
    alone = json.dumps(ALONE["messages"])
    r = raw(client, "/v1/rewrite/batch", f'{{"items": [{{"messages": {alone}, "id": NaN}}]}}')
    assert r.json()["results"][0]["error"]["type"] == "InvalidRequestError"  # not silently echoed as null
    for depth in (9, 900):
        deep = "[" * depth + "1" + "]" * depth
        r = raw(client, "/v1/rewrite", f'{{"messages": {alone}, "id": {deep}}}')
        assert "deep" in error_of(r, 422)["message"]
    shallow = raw(client, "/v1/rewrite", f'{{"messages": {alone}, "id": {{"run": [1, "a", {{"k": null}}]}}}}')
    assert shallow.json()["id"] == {"run": [1, "a", {"k": None}]}


def test_unparsable_bodies_are_invalid_json_errors(client):
    invalid_utf8 = client.post("/v1/rewrite", content=b'{"messages": "\xff\xfe"}', headers=JSON)
    assert error_of(invalid_utf8, 400)["type"] == "InvalidJSONError"
    nested = raw(client, "/v1/rewrite", "[" * 200_000 + "]" * 200_000)
    assert error_of(nested, 400)["type"] == "InvalidJSONError"


def test_head_probe_and_no_redirect_that_echoes_the_host(client):
    assert client.head("/healthz").status_code == 200
    r = client.post("/v1/rewrite/", json=ALONE, headers={"Host": "evil.example"})
    assert r.status_code == 404 and "location" not in r.headers
    assert "evil.example" not in r.text


def test_a_megabyte_query_or_turn_costs_no_seconds(client):
    big = "word " * 400_000  # 2 MB
    client.post("/v1/rewrite", json={"messages": ALONE["messages"]})  # loaded first: the pace below excludes loading
    start = time.perf_counter()
    assert client.post("/v1/rewrite", json={"messages": CONVERSATION}).status_code == 200
    small = time.perf_counter() - start  # this machine's own pace: the bound scales with it, not a fixed wall time
    start = time.perf_counter()
    r = client.post("/v1/rewrite", json={"messages": [*CONVERSATION[:2], {"role": "user", "content": big}]})
    assert error_of(r, 422)["type"] == "ContextOverflowError"
    history = [{"role": "user", "content": big}, *CONVERSATION]  # dropped: the rewrite runs on the rest
    ok = client.post("/v1/rewrite", json={"messages": history})
    assert ok.status_code == 200, ok.text
    assert time.perf_counter() - start < 2 + 10 * small  # tokenizing 2 MB took 11 s (~50 rewrites) before


def test_either_key_header_that_matches_is_enough(pool):
    with serving(create_app(pool, api_key="s3cret")) as c:
        both = {"Authorization": "Bearer wrong", "X-API-Key": "s3cret"}
        assert c.post("/v1/rewrite", json=ALONE, headers=both).status_code == 200
        assert c.post(
            "/v1/rewrite", json=ALONE, headers={"Authorization": "Bearer s3cret", "X-API-Key": "x"}
        ).is_success
        error_of(c.post("/v1/rewrite", json=ALONE, headers={"Authorization": "Bearer no", "X-API-Key": "no"}), 401)


def test_a_body_that_never_ends_gets_408(client):
    port = int(str(client.base_url).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /v1/rewrite HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        reply = b""
        while b"BodyTimeoutError" not in reply and (chunk := s.recv(4096)):  # headers and body may come apart
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408") and b"BodyTimeoutError" in reply


def test_a_batch_past_its_time_returns_what_finished(pool):
    slow = long_conversation("batch")
    items = [{**ALONE, "id": 0}, {**ALONE, "id": 1}, {"messages": slow, "id": 2}, {**ALONE, "id": 3}]
    with serving(create_app(pool, timeout_s=0.15)) as c:
        r = c.post("/v1/rewrite/batch", json={"items": items})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [res["id"] for res in results] == [0, 1, 2, 3]
        assert [res.get("decision") for res in results[:2]] == ["no_history", "no_history"]
        assert [res["error"]["type"] for res in results[2:]] == ["RequestTimeoutError"] * 2


def test_a_timed_out_call_frees_the_model_at_its_next_pass(pool):
    """Before: the abandoned call kept the rewriter to its end, and requests admitted meanwhile timed out too."""
    rewriter = pool.rewriters[0]
    measured = long_conversation("measured")
    start = time.perf_counter()
    rewriter.rewrite(measured)
    full = time.perf_counter() - start
    with serving(create_app(pool, timeout_s=0.2, queue_size=2)) as fast, serving(create_app(pool, timeout_s=600)) as c:
        start = time.perf_counter()
        error_of(fast.post("/v1/rewrite", json={"messages": long_conversation("abandoned")}), 504)
        ok = c.post("/v1/rewrite", json={"messages": CONVERSATION})
        took = time.perf_counter() - start
    assert ok.status_code == 200, ok.text
    assert took < full / 2, (took, full)  # the second request did not wait for the abandoned call to end


def test_the_engine_stops_between_passes_and_stays_consistent(pool):
    rewriter = pool.rewriters[0]
    before = rewriter.rewrite(CONVERSATION).rewrite
    stop = threading.Event()
    stop.set()
    with rewriter.engine.stop_when(stop), pytest.raises(CancelledError):
        rewriter.rewrite(long_conversation("stopped"))
    assert rewriter.rewrite(CONVERSATION).rewrite == before


def test_sigterm_drains_in_flight_requests_then_exits_0():
    proc, base = start_cli_server()
    try:
        slow: dict = {}
        body = {"messages": long_conversation("drain")}
        worker = threading.Thread(
            target=lambda: slow.update(r=httpx.post(f"{base}/v1/rewrite", json=body, timeout=600))
        )
        worker.start()
        time.sleep(0.5)  # the slow request is in flight
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(f"{base}/v1/rewrite", json=ALONE, timeout=30)
        assert error_of(refused, 503)["type"] == "ServerBusyError" and refused.headers["retry-after"].isdigit()
        worker.join(600)
        assert slow["r"].status_code == 200, slow["r"].text
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
