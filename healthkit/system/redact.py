"""Keep secrets out of reports: tokens in argv, KEY=VALUE pairs, URL credentials, secret-named config keys."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# The one list of words that make a name secret, for config keys, flags and KEY=VALUE text alike.
# `auth` counts alone or as authorization/authentication, never inside "author"; `token` never as a
# tokenizer or a token count (`max_tokens`).
SECRET_WORDS = r"token(?!iz|s\b|s_)|secret|passw(?:or)?d|passwd|api[_-]?key|access[_-]?key|auth(?![a-z])|authoriz|authenticat|credential|private[_-]?key"
_SECRET_NAME = re.compile(f"(?:{SECRET_WORDS})", re.I)
_SECRET_ASSIGNMENT = re.compile(
    rf"(?P<k>\b[\w.-]*(?:{SECRET_WORDS})[\w.-]*)(?P<sep>\s*[=:]\s*)(?P<v>\"[^\"]*\"|'[^']*'|\S+)", re.I
)
_URL_CRED = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<cred>[^/@\s:]+(:[^/@\s]*)?)@", re.I)
_HTTP_AUTH = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
_KNOWN_TOKENS = re.compile(
    r"\b(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{20,}|xox[bpa]-[A-Za-z0-9-]{10,})\b"
)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str) -> str:
    text = _URL_CRED.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _KNOWN_TOKENS.sub(MASK, text)
    text = _HTTP_AUTH.sub(lambda m: f"{m.group('scheme')} {MASK}", text)
    return _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group('k')}{m.group('sep')}{MASK}", text)


def redact_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """Mask the value after a secret-named flag (``--token X``, ``--api-key=X``) and secrets inside tokens."""
    out: list[str] = []
    mask_next = False  # (mutation testing: None here is the same falsy value, an equivalent mutant)
    for tok in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        if tok.startswith("-") and "=" not in tok and is_secret_name(tok):
            out.append(tok)
            mask_next = True
            continue
        if "=" in tok:  # --password=VALUE, and PASSWORD=VALUE as one argument: the whole value, spaces too
            flag, _, _ = tok.partition("=")
            if is_secret_name(flag):
                out.append(f"{flag}={MASK}")
                continue
        out.append(redact_text(tok))
    return out


def redact_mapping(value: Any) -> Any:
    """Copy of a JSON-like value with secret-named keys masked, at any depth."""
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and is_secret_name(k) and v not in (None, "") else redact_mapping(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_mapping(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


# Notification URLs (Apprise) carry their secret anywhere: user:password, a path segment (tgram://BOT_TOKEN/chat),
# a query value (?token=...). Nothing of one is ever shown; a channel is named by its scheme and, for schemes
# whose host is a server, that host.
_HOST_SCHEMES = frozenset(
    {
        "json",
        "jsons",
        "xml",
        "xmls",
        "form",
        "forms",
        "mailto",
        "mailtos",
        "ntfys",
        "ntfy",
        "gotify",
        "gotifys",
        "mmost",
        "mmosts",
        "matrix",
        "matrixs",
        "rocket",
        "rockets",
    }
)


def describe_url(url: str) -> str:
    """`json://127.0.0.1:8080/…`, `tgram://…`: enough to tell channels apart, never a token."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        return "(an unparsable URL)"
    if not scheme:
        return "(an unparsable URL)"
    try:
        port = parts.port
    except ValueError:  # `tgram://123:ABC/...`: a token where a port would be
        port = None
    if scheme in _HOST_SCHEMES and host:
        return f"{scheme}://{host}{f':{port}' if port else ''}/…"
    return f"{scheme}://…"


def url_secrets(url: str) -> list[str]:
    """Every part of a URL that may be a secret (longest first), for `mask_secrets`."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    url = url.strip()
    found = {url}
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    rest = url.split("://", 1)[-1]
    found.add(rest)
    netloc = parts.netloc
    if "@" in netloc:
        cred = netloc.rsplit("@", 1)[0]
        found.update([cred, *cred.split(":")])
    scheme = parts.scheme.lower()
    if scheme not in _HOST_SCHEMES:
        found.update([netloc, *netloc.split(":")])
    found.update(seg for seg in parts.path.split("/"))
    found.update(v for _, v in parse_qsl(parts.query, keep_blank_values=False))
    found.add(parts.query)
    found.add(parts.fragment)
    found |= {unquote(s) for s in list(found)}
    if scheme in _HOST_SCHEMES:
        found.discard(
            parts.hostname or ""
        )  # a server's name is not a secret, and masking it hides which channel failed
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def mask_secrets(text: str, secrets: list[str]) -> str:
    """``text`` with every known secret masked, then the generic rules of `redact_text`."""
    for s in secrets:
        if s and s in text:
            text = text.replace(s, MASK)
    return redact_text(text)
