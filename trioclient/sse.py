"""Server-Sent Events: a sans-I/O decoder for ``text/event-stream`` bodies.

The public face of :mod:`trioclient._sse`; see :class:`SSEDecoder` for how to use it.
"""

from ._sse import ServerSentEvent as ServerSentEvent
from ._sse import SSEDecoder as SSEDecoder
from ._sse import SSEError as SSEError

__all__ = ["SSEDecoder", "SSEError", "ServerSentEvent"]

# Tracebacks, reprs of the classes and the docs name the public module, not the
# private one that happens to implement them (as trio does for its own names).
for _cls in (ServerSentEvent, SSEDecoder, SSEError):
    _cls.__module__ = __name__
del _cls
