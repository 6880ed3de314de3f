"""Remove secrets from anything that is about to be logged, printed or stored.

Tokens travel in URLs (query strings, user:password@host) as often as in
headers, so every URL and message that leaves a job passes through here.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_WORDS = r"(?:token|key|secret|password|passwd|pwd|pass|auth|authorization|signature|sig|session|" \
                r"credentials?|jwt|bearer)"
# A parameter or field name that holds a secret: a secret word, alone or after a separator or a
# known prefix ("access_token", "X-Api-Key", "apiKey", "client-secret"), but not "monkey" or "keyword".
SECRET_NAME = re.compile(rf"(?i)(?:[\w.-]*[_.-])?(?:api|access|private|client|refresh|id|auth)?{_SECRET_WORDS}")
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_PAIR_IN_TEXT = re.compile(
    rf"(?i)\b((?:[\w.-]*[_.-])?(?:api|access|private|client|refresh|id|auth)?{_SECRET_WORDS})"
    r"(\"?\s*[=:]\s*\"?)([^\s&\"',;}]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
MASK = "***"


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_NAME.fullmatch(k) for k, _ in pairs):
            query = urlencode([(k, MASK if SECRET_NAME.fullmatch(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Redact URLs found in `text` and every literal secret value given."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _BEARER.sub(lambda m: m.group(1) + " " + MASK, text)
    text = _PAIR_IN_TEXT.sub(lambda m: m.group(1) + m.group(2) + MASK, text)  # token=..., "api_key": "..."
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
