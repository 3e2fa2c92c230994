"""ASGI apps for oip_route.py: a fixed-response floor, and seawall's OIP work behind Starlette."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seawall.assemble import assemble
from seawall.backends.oip import decode_infer_request, encode_infer_response
from seawall.config import parse_config
from seawall.context import CallContext
from seawall.errors import SeawallError
from seawall.gateway.oip import error_response

CONFIG = "models: [{name: echo, backend: {kind: mock}}]"
FIXED = (
    b'{"model_name":"echo","model_version":"1","outputs":[{"name":"output-0","datatype":"FP32",'
    b'"shape":[1,16],"data":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5,1.6]}]}'
)


async def floor(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body and answers fixed bytes: the cost of uvicorn alone."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(FIXED))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": FIXED})


def starlette_app() -> Starlette:
    """seawall's decode, pipeline and encode, routed by Starlette instead of plain ASGI."""
    repository = assemble(parse_config(CONFIG, environ={})).repository

    async def infer(request: Request) -> Response:
        ctx = CallContext.new(request.headers.get("x-request-id"))
        try:
            model = repository.get(request.path_params["model"])
            model.check_ready()
            decoded = decode_infer_request(await request.body(), None, model.name, model.version)
            body, content_type, _ = encode_infer_response(
                await model.handler(decoded, ctx), decoded
            )
        except SeawallError as exc:
            status, payload, _headers = error_response(exc)
            return Response(payload, status, media_type="application/json")
        return Response(body, 200, media_type=content_type.decode())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await repository.load_all()
        yield
        await repository.close_all()

    return Starlette(
        routes=[Route("/v2/models/{model}/infer", infer, methods=["POST"])], lifespan=lifespan
    )
