"""Message catalogues of the screen (zh-CN, en) plus the shared reason-code messages."""

from __future__ import annotations

import functools
import json
import logging
import pathlib

logger = logging.getLogger(__name__)

LOCALES_DIR = pathlib.Path(__file__).with_name("locales")
LANGUAGES = ("zh-CN", "en")


def normalise_language(value: str | None, default: str = "zh-CN") -> str:
    """Map what a browser or a config says ("en-GB", "zh", "ZH-cn") onto a catalogue we have."""
    if not value:
        return default
    v = value.strip().lower()
    if v.startswith("zh"):
        return "zh-CN"
    if v.startswith("en"):
        return "en"
    return default


@functools.cache
def catalogue(lang: str) -> dict[str, str]:
    """The screen's strings for one language, with `reason.<code>` entries from edge.reasons."""
    from edge import reasons

    lang = normalise_language(lang)
    strings = json.loads((LOCALES_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    for code in reasons.MESSAGES:
        strings.setdefault(f"reason.{code}", reasons.message(code, lang))
    return strings


def translate(lang: str, key: str, **values) -> str:
    text = catalogue(lang).get(key)
    if text is None:
        logger.warning("no %s text for %r", lang, key)
        return key
    return text.format(**values) if values else text
