"""HTTP/1.1 names and small helpers shared by the proxy's modules.

Constants and pure functions only: no thread of its own, no state; used by
the proxy's connection threads ("air-proxy-conn-N").
"""

import socket

# The app always listens on the loopback interface of this machine.
APP_HOST = "127.0.0.1"

# Headers that describe one connection, not the message: never forwarded
# (RFC 9110 section 7.6.1), in either direction.
HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
))

# The most the proxy reads from one side before writing it to the other.
CHUNK = 64 * 1024

# What a browser vanishing looks like from a connection thread (socket.timeout
# is not a TimeoutError before Python 3.10).
CLIENT_GONE = (ConnectionError, TimeoutError, socket.timeout)


class AppGone(Exception):
    """The app's side of a forwarded request failed (refused, reset, bad
    reply); `__cause__` is the original error, which the 502 page names."""


def tokens(values):
    """The lower-cased comma-separated tokens of header values, as a set
    (for Connection, Transfer-Encoding)."""
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}
