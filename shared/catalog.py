"""The event catalog, generated from shared.events: a JSON Schema per event type and an
AsyncAPI 3 document of the topics. `python -m shared.catalog` writes them to docs/events/;
tests/foundation/test_catalog.py fails when the files and the models drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.events import DISPATCH_TOPIC, EVENT_TYPES, ORDER_TRACKING_TOPIC, ORDERS_TOPIC, TOPICS, type_name

OUT = Path(__file__).resolve().parent.parent / "docs" / "events"

PRODUCERS = {ORDERS_TOPIC: "orders", ORDER_TRACKING_TOPIC: "orders", DISPATCH_TOPIC: "dispatch"}


def schemas() -> dict[str, dict[str, Any]]:
    return {type_name(cls): cls.model_json_schema(mode="serialization") for cls in EVENT_TYPES}


def asyncapi() -> dict[str, Any]:
    by_type = schemas()
    channels, messages, operations = {}, {}, {}
    for topic in TOPICS:
        in_topic = [cls for cls in EVENT_TYPES if cls.topic == topic]
        channel_id = topic.replace(".", "_").replace("-", "_")
        channels[channel_id] = {
            "address": topic,
            "description": f"Keyed by {'courier id' if 'courier' in topic else 'order id'}; "
            f"dead letters go to {topic}.dlq.",
            "messages": {
                type_name(c).replace(".", "_"): {"$ref": f"#/components/messages/{type_name(c).replace('.', '_')}"}
                for c in in_topic
            },
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Published by {PRODUCERS.get(topic, 'dispatch')} through its outbox",
        }
        for cls in in_topic:
            name = type_name(cls)
            messages[name.replace(".", "_")] = {
                "name": name,
                "title": name,
                "summary": (cls.__doc__ or "").strip(),
                "contentType": "application/json",
                "payload": {"$ref": f"schemas/{name}.json"},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Giao events",
            "version": "1.0.0",
            "description": "Envelope {id, type, version, occurred_at, source, subject, sequence, data}; "
            "sequence rises by one per subject within its topic. At-least-once; "
            "consumers are idempotent and ignore stale sequences.",
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
        "x-schemas": sorted(by_type),
    }


def rendered() -> dict[Path, str]:
    files = {
        OUT / "schemas" / f"{name}.json": json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        for name, schema in schemas().items()
    }
    files[OUT / "asyncapi.json"] = json.dumps(asyncapi(), indent=2, ensure_ascii=False) + "\n"
    return files


def main() -> int:
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(rendered())} files to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
