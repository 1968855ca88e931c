"""JSON Schema of the version-1 concentrator payloads, generated from the models.

The committed copy lives in ``protocols/mqtt/schema/v1.json`` for concentrator vendors; a
test checks it still matches the models. Regenerate it with::

    .venv/bin/python -c "from protocols.mqtt import json_schema_text; \\
        print(json_schema_text(), end='')" > protocols/mqtt/schema/v1.json
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic.json_schema import models_json_schema

from ._codec import DOWNLINK_MODELS, UPLINK_MODELS
from ._messages import SCHEMA_VERSION
from ._topics import TOPIC_PREFIX

__all__ = ["json_schema", "json_schema_text"]

_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every uplink and downlink payload.

    ``$defs`` holds one definition per message; ``oneOf`` accepts any of them and
    ``x-topics`` maps each topic pattern to the definition its payload must match.

    Returns:
        The schema as a JSON-compatible dict.
    """
    models = [*UPLINK_MODELS.values(), *DOWNLINK_MODELS.values()]
    _, defs = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/$defs/{model}"
    )
    topics: dict[str, dict[str, str]] = {}
    for direction, table in (("up", UPLINK_MODELS), ("down", DOWNLINK_MODELS)):
        for kind, model in table.items():
            pattern = f"{TOPIC_PREFIX}/{{concentrator}}/{direction}/{kind}"
            topics[pattern] = {"$ref": f"#/$defs/{model.__name__}"}
    return {
        "$schema": _SCHEMA_DIALECT,
        "$id": f"urn:meterhub:mqtt:payload:v{SCHEMA_VERSION}",
        "title": f"meterhub concentrator MQTT payloads, version {SCHEMA_VERSION}",
        "description": (
            "UTF-8 JSON objects published on meterhub/v1/c/{concentrator}/up/* by "
            "concentrators and on .../down/* by meterhub. Every payload carries "
            f'"v": {SCHEMA_VERSION}; unknown fields are rejected; timestamps are ISO 8601 '
            "with a UTC offset."
        ),
        "oneOf": [{"$ref": f"#/$defs/{model.__name__}"} for model in models],
        "x-topics": topics,
        "$defs": defs.get("$defs", {}),
    }


def json_schema_text() -> str:
    """The schema as stable, pretty-printed JSON text (sorted keys, trailing newline).

    Returns:
        The text committed as ``protocols/mqtt/schema/v1.json``.
    """
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
