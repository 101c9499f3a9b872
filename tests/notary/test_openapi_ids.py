"""The notary's OpenAPI document names every operation once (a HEAD route has its own id):
code generators and FastAPI itself ("Duplicate Operation ID") refuse the document otherwise."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from notary.api import create_app
from notary.service import NotaryService

_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def test_every_operation_id_is_unique(notary_dir: Path) -> None:
    svc = NotaryService.open(notary_dir)
    try:
        with warnings.catch_warnings(), TestClient(create_app(svc)) as client:
            warnings.simplefilter("error")  # FastAPI warns of a duplicate while building
            doc: dict[str, Any] = client.get("/openapi.json").json()
    finally:
        svc.close()
    ids = [
        op["operationId"]
        for path in doc["paths"].values()
        for method, op in path.items()
        if method in _METHODS
    ]
    assert ids, "the document lists no operations"
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    # the HEAD routes are documented, under ids of their own
    assert "head" in doc["paths"]["/v1/tsa/chain"]
    assert "head" in doc["paths"]["/checkpoint"]
