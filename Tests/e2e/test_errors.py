"""Every way a request can be refused, through Caddy, and the token limit."""

import json
import uuid

import pytest
from handoff_e2e import assert_well_formed, post_and_follow, request, sign_stream_token

HELLO = [{"role": "user", "content": "hello"}]


def body(**fields) -> dict:
    return {"model": "demo", "messages": HELLO, **fields}


def assert_error(reply, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert reply.status == status, (reply.status, reply.body[:500])
    assert reply.headers["Content-Type"].startswith("application/json")
    document = reply.json()
    assert set(document) == {"error"}
    error = document["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "payload, headers, status, param, code",
    [
        pytest.param(
            json.dumps(body(model="no-such-model")), JSON, 404, "model", "model_not_found", id="unknown-model"
        ),
        pytest.param(json.dumps(body(messages=[])), JSON, 400, "messages", None, id="no-messages"),
        pytest.param(
            json.dumps(body(messages=[{"role": "wizard", "content": "hi"}])),
            JSON,
            400,
            "messages[0].role",
            None,
            id="bad-role",
        ),
        pytest.param(
            json.dumps(body(messages=[{"role": "user", "content": 42}])),
            JSON,
            400,
            "messages[0].content",
            None,
            id="content-not-string",
        ),
        pytest.param('{"model": "demo", "messages": [', JSON, 400, None, None, id="broken-json"),
        pytest.param(json.dumps(body()), {"Content-Type": "text/plain"}, 415, None, None, id="text-plain"),
        pytest.param(
            json.dumps(body(messages=[{"role": "user", "content": "x" * (2 << 20)}])),
            JSON,
            413,
            None,
            None,
            id="2MB-body",
        ),
        pytest.param(
            json.dumps(body(stream_options={"include_usage": True})),
            JSON,
            400,
            "stream_options",
            None,
            id="stream-options-without-stream",
        ),
        pytest.param(json.dumps(body(max_tokens=0)), JSON, 400, "max_tokens", None, id="max-tokens-0"),
        pytest.param(json.dumps(body(n=2)), JSON, 400, "n", "unsupported_value", id="n-2"),
        pytest.param(json.dumps(body(temperature=3)), JSON, 400, "temperature", None, id="temperature-3"),
        pytest.param(json.dumps(body(top_p=-1)), JSON, 400, "top_p", None, id="top-p-negative"),
        pytest.param(json.dumps(body(stop=["a", "b", "c", "d", "e"])), JSON, 400, "stop", None, id="five-stops"),
        pytest.param(
            json.dumps(
                body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
            ),
            JSON,
            400,
            "messages[0].content[0].type",
            None,
            id="image-part",
        ),
    ],
)
def test_bad_request_is_refused(cluster, payload, headers, status, param, code):
    assert_error(request("POST", "/v1/chat/completions", payload, headers), status, param, code)


def handoff_location() -> tuple[str, str]:
    reply = request("POST", "/api/chat/completions", body(max_tokens=1))
    assert reply.status == 302, reply.body
    path, _, query = reply.headers["Location"].partition("?token=")
    return path, query


def test_stream_without_token_is_unauthorized(cluster):
    path, _ = handoff_location()
    assert_error(request("GET", path), 401)


def test_stream_with_tampered_token_is_forbidden(cluster):
    path, token = handoff_location()
    expiry, mac = token.split(".")
    tampered = f"{expiry}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}"
    assert_error(request("GET", f"{path}?token={tampered}"), 403)


def test_token_is_bound_to_its_task(cluster):
    _, token = handoff_location()
    assert_error(request("GET", f"/sse/chat/completions/{uuid.uuid4()}?token={token}"), 403)


def test_unknown_task_with_valid_token_is_not_found(cluster):
    task = str(uuid.uuid4())
    assert_error(request("GET", f"/sse/chat/completions/{task}?token={sign_stream_token(cluster.secret, task)}"), 404)


def test_max_tokens_cuts_the_reply(cluster):
    handoff, stream = post_and_follow(body(max_tokens=5))
    assert_well_formed(stream, handoff["id"])
    assert len(stream.content_chunks) == 5
    assert all(c["choices"][0]["delta"]["content"] for c in stream.content_chunks)
    assert stream.finish_reasons == ["length"]
    assert "usage" not in stream.chunks[-1], "usage was not asked for"
