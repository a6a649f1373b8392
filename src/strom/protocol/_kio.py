"""The kio imports the codec uses, loaded without kio's Hypothesis hooks.

kio registers Hypothesis strategies for its types whenever Hypothesis is importable, which
adds a quarter of a second to every broker start in environments that have it (test suites
embedding strom). Hide it from kio unless this process already uses it.
"""

from __future__ import annotations

import sys

_HIDE_HYPOTHESIS = "hypothesis" not in sys.modules
if _HIDE_HYPOTHESIS:
    sys.modules["hypothesis"] = None  # type: ignore[assignment]  # makes its import fail
try:
    import kio.static._phantom  # noqa: F401  # decides once whether Hypothesis is present
    from kio.index import load_request_schema, load_response_schema
    from kio.schema.errors import ErrorCode as _KioErrorCode
    from kio.schema.index import api_key_map, schema_name_map
    from kio.serial import entity_reader
    from kio.static.constants import EntityType
finally:
    if _HIDE_HYPOTHESIS:
        del sys.modules["hypothesis"]

__all__ = [
    "EntityType",
    "_KioErrorCode",
    "api_key_map",
    "entity_reader",
    "load_request_schema",
    "load_response_schema",
    "schema_name_map",
]
