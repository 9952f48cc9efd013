"""Book search terms (first cut: whitespace/character terms; see issue 5)."""
import re

_WORD = re.compile(r"[A-Za-z0-9]+|[\u4e00-\u9fff]")


def index_fields(info):
    text = " ".join(str(info.get(f) or "") for f in ("title", "author"))
    text += " " + " ".join(info.get("tags") or [])
    return {"terms": sorted({w.lower() for w in _WORD.findall(text)})}
