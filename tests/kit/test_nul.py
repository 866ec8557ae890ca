"""kit.nul.NulGuard: a NUL in a path, a query or a JSON body is a problem, and what passes is unchanged."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from kit.errors import install_error_handlers
from kit.nul import NulGuard


def echo_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(NulGuard)
    app.state.reached = 0

    @app.post("/things/{thing_id}")
    async def post_thing(thing_id: str, request: Request) -> dict[str, Any]:
        app.state.reached += 1
        return {"id": thing_id, "body": (await request.body()).decode("latin-1")}

    @app.get("/things/{thing_id}")
    async def get_thing(thing_id: str, q: str = "") -> dict[str, str]:
        app.state.reached += 1
        return {"id": thing_id, "q": q}

    return app


def test_a_nul_in_the_path_or_query_is_a_400_that_reaches_no_handler() -> None:
    app = echo_app()
    with TestClient(app) as client:
        for path in ["/things/%00", "/things/a%00b", "/things/a?q=%00", "/things/a?q=x%00y&r=1"]:
            response = client.get(path)
            assert response.status_code == 400, path
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"].endswith("/invalid-parameter")
        assert app.state.reached == 0
        assert client.get("/things/a?q=%01").json() == {"id": "a", "q": "\x01"}  # only NUL is refused


def test_a_json_body_holding_a_nul_is_a_422_and_others_pass_whole() -> None:
    app = echo_app()
    with TestClient(app) as client:
        refused = client.post("/things/a", json={"name": "a\x00b"})
        assert refused.status_code == 422 and refused.json()["type"].endswith("/validation-error")
        assert app.state.reached == 0

        body = '{"name": "张三", "note": "\\\\not a nul"}'
        passed = client.post("/things/a", content=body, headers={"content-type": "application/json"})
        assert passed.status_code == 200 and passed.json()["body"].encode("latin-1") == body.encode()
        # A body that is not JSON is not read here: a CSV or an HL7 message goes on as sent.
        raw = b"code,name\n1,\x00x\n"
        passed_raw = client.post("/things/a", content=raw, headers={"content-type": "text/csv"})
        assert passed_raw.json()["body"].encode("latin-1") == raw


def test_a_json_body_in_chunks_is_checked_across_them() -> None:
    app = echo_app()
    with TestClient(app) as client:

        def chunks() -> Any:
            yield b'{"name": "a\\u00'
            yield b'00b"}'

        refused = client.post("/things/a", content=chunks(), headers={"content-type": "application/json"})
        assert refused.status_code == 422
        assert app.state.reached == 0

        def fine() -> Any:
            yield b'{"name": '
            yield b'"ab"}'

        passed = client.post("/things/a", content=fine(), headers={"content-type": "application/json"})
        assert passed.status_code == 200 and passed.json()["body"] == '{"name": "ab"}'
