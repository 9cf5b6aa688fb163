"""PUBSUB requests of the daemon protocol (go daemon specs/PUBSUB.md).

GET_TOPICS (``pubsub.topics``), LIST_PEERS (``pubsub.peerIDs``, of a topic if given),
PUBLISH (plain OK). SUBSCRIBE answers OK and then streams one varint-delimited ``PSMessage``
per message on the same connection until the client closes it (which unsubscribes).
"""

from __future__ import annotations

import trio

from ..errors import NodeError
from ..proto import daemon_pb2 as pb
from .codec import encode_message, error_response, ok_response
from .ports import ControlNode


def _service(node: ControlNode):
    if node.pubsub is None:
        raise NodeError("pubsub not enabled: start the daemon with -pubsub")
    return node.pubsub


def _topic(req: pb.PSRequest) -> str:
    if not isinstance(req.topic, str):  # proto2 hands back bytes for invalid UTF-8
        raise NodeError("topic is not valid UTF-8")
    return req.topic


async def handle_pubsub(node: ControlNode, request: pb.Request) -> pb.Response:
    ps = _service(node)
    if not request.HasField("pubsub"):
        raise NodeError("PUBSUB request without a PSRequest")
    req = request.pubsub
    topic = _topic(req)
    if req.type == pb.PSRequest.GET_TOPICS:
        return ok_response(pubsub=pb.PSResponse(topics=ps.topics()))
    if req.type == pb.PSRequest.LIST_PEERS:
        return ok_response(pubsub=pb.PSResponse(peerIDs=ps.peers(topic or None)))
    if req.type == pb.PSRequest.PUBLISH:
        if not topic:
            raise NodeError("PUBLISH needs a topic")
        try:
            ps.publish(topic, bytes(req.data))
        except ValueError as exc:
            raise NodeError(str(exc)) from None
        return ok_response()
    raise NodeError(f"unsupported PUBSUB request type {req.type}")


async def serve_subscribe(node: ControlNode, request: pb.Request, stream) -> None:
    """SUBSCRIBE: OK, then PSMessages until the client goes away."""
    try:
        ps = _service(node)
        topic = _topic(request.pubsub)
        if not topic:
            raise NodeError("SUBSCRIBE needs a topic")
    except NodeError as exc:
        await stream.send_all(encode_message(error_response(str(exc))))
        return
    channel = ps.subscribe(topic)
    try:
        await stream.send_all(encode_message(ok_response()))
        async with trio.open_nursery() as nursery:
            async def watch_client() -> None:
                try:
                    while await stream.receive_some(4096):
                        pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_client)
            async for _msg_id, m in channel:
                out = pb.PSMessage(data=m.data, seqno=m.seqno, topicIDs=[m.topic])
                setattr(out, "from", m.from_peer)
                if m.signature:
                    out.signature = m.signature
                if m.key:
                    out.key = m.key
                await stream.send_all(encode_message(out))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        ps.unsubscribe(topic, channel)
