"""The committed event catalog matches the models, and the schemas reject what the models reject."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared import catalog
from shared.events import EVENT_TYPES, DeliveryDelivered, new_event, parse_event, type_name


def test_committed_schemas_match_the_models():
    stale = [
        str(p.relative_to(catalog.OUT))
        for p, text in catalog.rendered().items()
        if not p.exists() or p.read_text() != text
    ]
    assert not stale, f"run `python -m shared.catalog` and commit: {stale}"
    on_disk = {p.stem for p in (catalog.OUT / "schemas").glob("*.json")}
    assert on_disk == {type_name(c) for c in EVENT_TYPES}, "a schema file without a model (or the reverse)"


def test_every_event_type_is_in_the_asyncapi_catalog():
    doc = json.loads((catalog.OUT / "asyncapi.json").read_text())
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == {type_name(c) for c in EVENT_TYPES}


def test_models_are_frozen_and_forbid_unknown_fields():
    event = new_event(
        DeliveryDelivered,
        subject="6f1c2b1e-8a3e-4c1a-9b1a-1a2b3c4d5e6f",
        sequence=1,
        source="dispatch",
        data={"order_id": "6f1c2b1e-8a3e-4c1a-9b1a-1a2b3c4d5e6f", "cod_collected_vnd": 0},
    )
    with pytest.raises(ValidationError):
        event.sequence = 2  # frozen
    raw = json.loads(event.model_dump_json())
    raw["data"]["tip_vnd"] = 5
    with pytest.raises(ValidationError, match="tip_vnd"):
        parse_event(json.dumps(raw))
