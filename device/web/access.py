"""Who may use the page: the token when one is configured, and only loopback Host names when none is.

With a token, every request must carry it (`?token=` or the X-Hairmirror-Token header). Without one the server
listens on loopback only (the config enforces that); refusing other Host names there stops a web page the
user visits from reaching the mirror through a DNS name rebound to 127.0.0.1.
"""
from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import unquote_plus

from ..config import LOOPBACK_HOSTS

_log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Hairmirror-Token"
TOKEN_PARAM = "token"
_PARAM_NAME = re.compile(r"(?<![^&?\s=])[^&?\s=]++=")  # from a separator on: linear in a 64 kB line
_VALUE_END = re.compile(r"[&\s]|$")  # a token may hold " < > ? =: its value runs to the next & or space


def redact(text: str) -> str:
    """The text with the value of any `token=...` hidden (request lines go to the log), its name in any case or
    percent-encoded too (?TOKEN=, ?%74oken=: a wrong one may be the real token mistyped). Another parameter's
    value is looked into as well (/a=b?token=...)."""
    kept, end = [], 0
    for name in _PARAM_NAME.finditer(text):
        if name.start() < end or TOKEN_PARAM not in unquote_plus(name[0][:-1]).lower():
            continue
        kept.append(text[end:name.end()] + "***")
        end = _VALUE_END.search(text, name.end()).start()
    return "".join(kept) + text[end:]


def host_name(host_header: str) -> str:
    """'127.0.0.1:8080' -> '127.0.0.1', '[::1]:8080' -> '::1', 'localhost' -> 'localhost'; a malformed
    bracketed name ('[::1', '[::1]x') is returned as it is, which is no loopback name."""
    if host_header.startswith("["):
        inside, bracket, rest = host_header[1:].partition("]")
        return inside if bracket and (not rest or rest.startswith(":")) else host_header  # "[::1" is no name
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


class AccessGuard:
    def __init__(self, token: str):
        self.token = token.encode()

    def refuse(self, args, headers) -> tuple[int, str] | None:
        """(HTTP status, reason) when the request may not proceed, else None."""
        if self.token:
            given = headers.get(TOKEN_HEADER) or args.get(TOKEN_PARAM) or ""
            if not hmac.compare_digest(given.encode(), self.token):
                what = "a wrong token" if given else "no token"
                return 401, (f"this mirror needs its token ({what} given): open the page as /?token=... "
                             f"or send the {TOKEN_HEADER} header")
            return None
        name = host_name(headers.get("Host", "")).lower()
        if name not in LOOPBACK_HOSTS:  # in any case, but exactly: "localhost." is no name a browser needs
            shown = name if len(name) <= 64 else name[:64] + "..."  # a header can be 64 kB: never echo all of it
            return 403, (f"Host {shown!r} is not a loopback name; without web.token this page answers only "
                         f"127.0.0.1, localhost and [::1]")
        return None
