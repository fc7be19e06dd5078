"""The combined OpenAPI document is a contract: schemathesis calls every operation of it on a
real multi-user server, as a real signed-in user, and checks that each answer is no server
error and has a documented status, content type and body schema.

Examples are bounded (EXAMPLES per operation) to keep the file to about a minute on a loaded
machine. Random ids only ever meet 404s, so half of the calls use the ids of a real document,
object, source and column of the user's own, to reach the success answers too.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import new_username
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import FlakyStrategyDefinition, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from services.common.app import combined_openapi
from services.common.names import SERVICE_PREFIXES

# per operation; PLOTLINE_CONTRACT_EXAMPLES=200 for a longer hunt
EXAMPLES = int(os.environ.get("PLOTLINE_CONTRACT_EXAMPLES", "20"))
MODES = [(GenerationMode.POSITIVE, EXAMPLES), (GenerationMode.NEGATIVE, EXAMPLES // 2)]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# one model of the seeded document, with a column data source
DOC = {"roots": [{"type": "object", "name": "ColumnDataSource", "id": "cds1",
                  "attributes": {"data": {"type": "map", "entries": [["x", [1, 2, 3]]]}}}],
       "title": "contract", "version": "3.4.0"}

# the server: multi-user on the embedded stores (the contract is the same on every backend)
ONE_SERVER = pytest.mark.parametrize("multi_server", ["file"], indirect=True)


@pytest.fixture(scope="module")
def seeded(multi_server) -> dict[str, Any]:
    """A user with a document, a source and an API key, and spare login tokens for the
    logout calls (which end the session they are made with; it takes no input, so it is
    called once or twice)."""
    name, password = new_username(), "correct horse battery"
    with httpx.Client(base_url=multi_server.url, timeout=30) as c:
        assert c.post("/api/v1/auth/register",
                      json={"username": name, "password": password}).status_code == 201

        def login() -> str:
            r = c.post("/api/v1/auth/login", json={"username": name, "password": password})
            assert r.status_code == 200, r.text
            return r.json()["access_token"]

        token = login()
        auth = {"Authorization": f"Bearer {token}"}
        c.cookies.clear()
        doc = c.post("/api/v1/docs/", json={"title": "contract", "doc": DOC}, headers=auth)
        source = c.post("/api/v1/data/sources", headers=auth,
                        json={"name": "s", "columns": {"x": [1.0, 2.0, 3.0], "y": [3, 1, 2]}})
        key = c.post("/api/v1/auth/apikeys", json={"name": "k"}, headers=auth)
        assert {doc.status_code, source.status_code, key.status_code} == {201}, (
            doc.text, source.text, key.text)
        spares = [login() for _ in range(3)]
    return {"headers": auth, "spares": spares,
            "ids": {"doc_id": doc.json()["id"], "obj_id": "cds1",
                    "source_id": source.json()["id"], "name": "x",
                    "key_id": key.json()["id"]}}


@pytest.fixture(scope="module")
def api_schema(multi_server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{multi_server.url}/api/v1/openapi.json")


@ONE_SERVER
def test_every_operation_keeps_its_contract(api_schema, seeded, multi_server) -> None:
    """Each operation in turn (not schemathesis's pytest plugin, whose lazy fixture loading
    does not work with this pytest); every failing operation is listed, not only the first."""
    turn = itertools.count()

    def call(case: schemathesis.Case) -> None:
        headers = dict(seeded["headers"])
        if case.path.endswith("/auth/logout"):  # it ends its session: spend a spare one
            spare = seeded["spares"].pop() if seeded["spares"] else None
            headers = {"Authorization": f"Bearer {spare}"} if spare else {}
        # every other call uses the user's own ids, but never deletes the seeded resources
        deletes_it = case.method == "DELETE" and case.path.endswith("}") and (
            case.path.count("{") == 1)
        own = next(turn) % 2 and not deletes_it
        if own:  # new dicts: the drawn ones may be shared with later draws
            ids = {k: v for k, v in seeded["ids"].items() if k in (case.path_parameters or {})}
            case.path_parameters = {**(case.path_parameters or {}), **ids}
            if case.query:  # downsample's and aggregate's column names
                case.query = {**case.query, **{c: c for c in ("x", "y") if c in case.query}}
        response = case.call_and_validate(base_url=multi_server.url, headers=headers,
                                          checks=CHECKS, timeout=30)
        if own and case.path.endswith("/columns/{name}") and response.status_code == 200:
            put_back_column()  # deleted or replaced: later calls read it again
        if own and case.method == "PUT" and case.path.endswith("/{source_id}/data") and \
                response.status_code == 200:
            put_back_rows()  # every row replaced: the seeded ones again
        seen.setdefault(f"{case.method} {case.path}", Counter())[response.status_code] += 1

    def put_back_column() -> None:
        ids = seeded["ids"]
        r = httpx.put(f"{multi_server.url}/api/v1/data/sources/{ids['source_id']}/columns/x",
                      json={"values": [1.0, 2.0, 3.0]}, headers=seeded["headers"])
        assert r.status_code == 200, r.text

    def put_back_rows() -> None:
        ids = seeded["ids"]
        r = httpx.put(f"{multi_server.url}/api/v1/data/sources/{ids['source_id']}/data",
                      json={"columns": {"x": [1.0, 2.0, 3.0], "y": [3, 1, 2]}},
                      headers=seeded["headers"])
        assert r.status_code == 200, r.text

    operations, failures, seen = [], [], {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations.append(operation)
        # valid requests, then (half as many) invalid ones: those must be refused with a
        # documented 4xx, never a 500
        for mode, examples in MODES:
            test = settings(max_examples=examples, deadline=None, derandomize=True,
                            database=None, suppress_health_check=list(HealthCheck))(
                given(case=operation.as_strategy(generation_mode=mode))(call))
            try:
                test()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # no input to get wrong: fine
            except FlakyStrategyDefinition:
                # schemathesis's negative generation sometimes draws differently on replay
                # (schemathesis#4518) with no call failing: a fault of the generator
                assert mode is GenerationMode.NEGATIVE
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis: an ExceptionGroup
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}):"
                                f" {exc}")
    calls = sum(sum(c.values()) for c in seen.values())
    print(f"schemathesis: {len(operations)} operations, {calls} calls")
    for operation, statuses in seen.items():
        print(f"  {operation}: {dict(sorted(statuses.items()))}")
    assert {op.path.split("/")[3] for op in operations} == {"auth", "docs", "data"}
    assert not failures, f"{len(failures)} operations break their contract:\n" + (
        "\n\n".join(failures))


@ONE_SERVER
def test_combined_document_has_every_service(multi_server) -> None:
    doc = httpx.get(f"{multi_server.url}/api/v1/openapi.json").json()
    assert doc["servers"] == [{"url": "/"}]
    paths = doc["paths"]
    for service in ("auth", "docs", "data"):
        assert any(p.startswith(SERVICE_PREFIXES[service] + "/") for p in paths), service
    # push is a websocket (not OpenAPI); it has no REST operation to list
    assert not any(p.startswith(SERVICE_PREFIXES["push"]) for p in paths)
    operations = [op for item in paths.values() for op in item.values()]
    for op in operations:  # every error an operation documents is {error, detail}
        for status, answer in op["responses"].items():
            if status.startswith(("4", "5")):
                ref = answer["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorBody", (op["operationId"], status)
    for ref in _refs(doc):  # and every schema referred to is in the merged components
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]


@ONE_SERVER
def test_a_path_with_a_control_character_is_no_route(multi_server, seeded) -> None:
    """Starlette's `$` also matches before a final newline: without the guard this was the
    list of documents, answered for `GET /docs/{doc_id}` (found by the test above)."""
    for path in ("/api/v1/docs/%0A", "/api/v1/data/sources/%0A", "/api/v1/auth/me%0A"):
        r = httpx.get(multi_server.url + path, headers=seeded["headers"])
        assert r.status_code == 404 and r.json()["error"] == "not_found", path


async def test_one_service_alone_describes_the_whole_api() -> None:
    """`plotline serve docs` answers /api/v1/openapi.json in the distributed mode (the
    ingress sends docs the rest of the prefix): the same document as the embedded one."""
    from services.docs.app import create_app
    from services.docs.config import DocsSettings
    from services.server.embedded import Embedded

    docs_alone = Embedded({"docs": create_app(DocsSettings.model_construct())}, "/plots")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=docs_alone),
                                 base_url="http://plotline") as client:
        alone = (await client.get("/plots/api/v1/openapi.json")).json()
    assert alone == combined_openapi([], "/plots") and alone["servers"] == [{"url": "/plots"}]
    assert {p.split("/")[3] for p in alone["paths"]} == {"auth", "docs", "data"}
    # docs' and data's PatchIn differ: both kept, data's renamed, its references too
    schemas = alone["components"]["schemas"]
    assert {"PatchIn", "DataPatchIn"} <= set(schemas) and "events" in str(schemas["PatchIn"])
    patch = alone["paths"]["/api/v1/data/sources/{source_id}/patch"]["post"]
    assert "DataPatchIn" in str(patch["requestBody"])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
