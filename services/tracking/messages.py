"""The tracking page's message table, web/messages.vi.json: the page (page.py), its script
(web/tracking.js) and the API's timeline texts (domain.public_view) all read it, so each text
is written once. Read once, at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

WEB = Path(__file__).parent / "web"
MESSAGES: dict[str, Any] = orjson.loads((WEB / "messages.vi.json").read_bytes())
