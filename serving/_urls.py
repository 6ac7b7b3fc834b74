"""Checks of the URLs the service will call (webhook receivers), made when they are
registered, so a URL that can never be reached is a 422 naming it instead of a failed
delivery on every dispatcher round."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["check_webhook_url"]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EXPECTED = "an http:// or https:// URL with a host name or IP address (no user:password@)"


def _check_host(host: str) -> None:
    if host.startswith("["):  # an IPv6 literal, as urlsplit leaves it in netloc
        try:
            ipaddress.IPv6Address(host[1:-1] if host.endswith("]") else "")
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        return
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"host {host!r} is not a valid host name") from None
    labels = ascii_host.removesuffix(".").split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"host {host!r} is not a valid host name (labels of letters, digits "
                         "and inner hyphens, 1 to 63 characters each)")
    if labels[-1].isdigit():  # 300.1.1.1 or 10.0.0: neither a name nor an IPv4 address
        raise ValueError(f"host {host!r} is neither an IPv4 address nor a host name")


def check_webhook_url(url: str) -> str:
    """``url`` if the dispatcher can POST to it; a ``ValueError`` saying what is wrong."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError(f"expected {_EXPECTED}; got a URL with spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a bracketed host that is no IPv6 address, for one
        raise ValueError(f"expected {_EXPECTED}; got an unparsable URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"expected {_EXPECTED}; got scheme {parts.scheme or '(none)'!r}")
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError(f"expected {_EXPECTED}; got credentials in the URL (send no "
                         "user:password@: the receiver checks the signature instead)")
    if netloc.endswith("]") or ":" not in netloc:
        host, port = netloc, ""
    else:
        host, _, port = netloc.rpartition(":")
    if not host:
        raise ValueError(f"expected {_EXPECTED}; got no host")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"port {port!r} is not a number from 1 to 65535")
    if host.count(":") and not host.startswith("["):
        raise ValueError(f"host {host!r} is not valid (an IPv6 address is written [::1])")
    _check_host(host)
    if parts.fragment:
        raise ValueError(f"expected {_EXPECTED} without a #fragment (it is never sent)")
    return url
