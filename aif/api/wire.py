"""The framing both control APIs share, without their message models.

The AIM API (:mod:`aif.api.aim`) and the User API (:mod:`aif.api.user`) send one
msgpack map per ZeroMQ message; their requests are pydantic models, which a client that
only sends a request and reads a reply never needs. This module holds what such a
client does need (packing a map, unpacking a size-checked frame, turning a reply into
its result or the ``aif.errors`` class it names), so ``aif ps`` and every other daemon
command load neither pydantic nor the message models: a third of their start-up.
"""

from __future__ import annotations

from typing import Any

import msgpack

from aif import errors
from aif.errors import AIFError, ControllerError, MalformedMessage

#: Largest control message either API accepts, in bytes (payloads go over channels).
MAX_API_MESSAGE = 16 * 2**20
#: Longest error message a reply carries, in characters: an error about a huge request
#: (a list of a million wrong values) is cut here, so the reply stays small.
MAX_ERROR_MESSAGE = 4096

#: Error classes a reply may name; anything else arrives as ``ControllerError``.
_ERRORS: dict[str, type[AIFError]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, AIFError) and name != "CleanupError"
}


def pack_map(message: dict[str, Any]) -> bytes:
    """Encode one request or reply map."""
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


def unpack_api_message(frame: bytes, api: str = "AIM API", hint: str = "") -> object:
    """One msgpack map of a control API (AIM API, User API), size-checked.

    Shared by both APIs so they refuse oversized and undecodable frames alike
    (``MalformedMessage``); ``hint`` says what to do about an oversized one.
    """
    if len(frame) > MAX_API_MESSAGE:
        raise MalformedMessage(
            f"{api} message of {len(frame)} bytes exceeds {MAX_API_MESSAGE}"
            + (hint and f"; {hint}")
        )
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:
        raise MalformedMessage(f"{api} message is not valid msgpack: {exc}") from exc


def ok_reply(rid: int, result: Any) -> dict[str, Any]:
    """A successful reply."""
    return {"rid": rid, "ok": True, "result": result}


def error_reply(rid: int, error: BaseException) -> dict[str, Any]:
    """A failed reply carrying the error's class name and message (at most
    :data:`MAX_ERROR_MESSAGE` characters: a longer one is cut, saying so)."""
    kind = type(error).__name__ if isinstance(error, AIFError) else "ControllerError"
    return {"rid": rid, "ok": False, "error": {"type": kind, "message": bounded(str(error))}}


def bounded(message: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    """``message``, cut to about ``limit`` characters with a note of how much was left out."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]} ... ({len(message) - limit} more characters not shown)"


def reply_result(reply: Any, address: str) -> Any:
    """The result of a reply, or its error raised as the ``aif.errors`` class it names.

    The class is looked up in a fixed table, never evaluated from what was received.
    """
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise MalformedMessage(f"the controller at {address} sent a reply that is not one")
    if reply["ok"]:
        return reply.get("result")
    error = reply.get("error")
    if not isinstance(error, dict):
        raise MalformedMessage(f"the controller at {address} sent an error without details")
    cls = _ERRORS.get(str(error.get("type")), ControllerError)
    message = str(error.get("message", "unknown error"))
    try:
        exc = cls(message)
    except TypeError:  # classes with extra constructor arguments (ChipError, ...)
        exc = ControllerError(message)
    raise exc
