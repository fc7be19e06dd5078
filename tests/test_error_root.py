"""One error root: every domain error is a PlotlineError carrying its status and code, and the
one handler renders each as {"error", "detail"} with that status (no translators between)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import httpx
import pytest
from fastapi import FastAPI

import services
from services.common.errors import PlotlineError
from services.common.httperrors import ErrorBody, errors, install_error_handlers
from services.common.stores.blob import BlobNotFound
from services.common.stores.kv import VersionConflict
from services.data.columns import DataError, DataTooLarge, UnknownColumn
from services.data.large import LargeDataError
from services.docs.values import DocumentError, ModelExists, ModelInUse, ModelNotFound

# Exceptions under services/ that never reach a route, and why.
NOT_RAISED_TO_ROUTES = {
    # a refused websocket handshake: push closes the socket with this code (4401, 4403, ...)
    "services.push.handshake.Refused",
    # the client went away mid-request: there is no one left to answer
    "services.common.front.Disconnected",
}


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in a module under services/."""
    found = []
    for module_info in pkgutil.walk_packages(services.__path__, "services."):
        module = importlib.import_module(module_info.name)
        found += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, BaseException) and cls.__module__ == module.__name__]
    return found


def test_every_domain_error_is_a_plotline_error() -> None:
    classes = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in exception_classes()}
    assert {"services.data.dtypes.DataError", "services.docs.values.DocumentError",
            "services.common.stores.kv.VersionConflict"} <= set(classes)  # the walk works
    assert NOT_RAISED_TO_ROUTES <= set(classes)  # and the exceptions listed still exist
    strays = sorted(name for name, cls in classes.items()
                    if not issubclass(cls, PlotlineError) and name not in NOT_RAISED_TO_ROUTES)
    assert not strays, f"exceptions that would answer 500: {strays}"


def test_pure_code_errors_keep_their_python_kinds() -> None:
    """The column and model code is also used outside routes, where callers catch the
    builtin kinds."""
    assert issubclass(DataError, ValueError) and issubclass(DocumentError, ValueError)
    assert issubclass(ModelNotFound, KeyError) and issubclass(BlobNotFound, KeyError)
    assert issubclass(LargeDataError, ValueError)


# (the error, the status and code the API has always answered with for it)
CASES = [
    (DataError("column 'x' mixes numbers and strings"), 422, "invalid_data"),
    (DataTooLarge("column 'x': 9 bytes is more than 8"), 413, "payload_too_large"),
    (UnknownColumn("no column 'z'"), 404, "column_not_found"),
    (LargeDataError("n must be between 2 and 1000000"), 422, "invalid_request"),
    (DocumentError("events must be a list"), 422, "invalid_document"),
    (ModelExists("model 'p1' already exists"), 409, "model_exists"),
    (ModelInUse("model 'p1' is a root of the document"), 409, "model_in_use"),
    (ModelNotFound("no model 'p9' in this document"), 404, "model_not_found"),
    (VersionConflict("expected version 3, found 4"), 409, "version_conflict"),
]


@pytest.fixture(scope="module")
def app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{index}")
    async def raise_it(index: int) -> None:
        raise CASES[index][0]

    @app.get("/blob")
    async def gone() -> None:
        raise BlobNotFound("sources/abc/chunk-0001.arrow")

    return app


async def call(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        return await client.get(path)


@pytest.mark.parametrize("index", range(len(CASES)),
                         ids=[type(exc).__name__ for exc, _, _ in CASES])
async def test_one_handler_renders_each(app: FastAPI, index: int) -> None:
    exc, status, code = CASES[index]
    assert (exc.status, exc.code) == (status, code)
    r = await call(app, f"/raise/{index}")
    assert r.status_code == status
    assert r.json() == {"error": code, "detail": str(exc.args[0])}


async def test_a_missing_blob_is_a_404_naming_no_path(app: FastAPI) -> None:
    r = await call(app, "/blob")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert "chunk" not in r.json()["detail"]


def test_responses_helper_declares_the_error_body() -> None:
    declared = errors(404, 409)
    assert set(declared) == {404, 409}
    assert all(d["model"] is ErrorBody and d["description"] for d in declared.values())
    assert set(ErrorBody.model_json_schema()["required"]) == {"error", "detail"}
