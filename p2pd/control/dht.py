"""DHT requests of the daemon protocol, answered by the node's DHT service.

Single answers: FIND_PEER (``dht.peer``), GET_PUBLIC_KEY and GET_VALUE (``dht.value``),
PUT_VALUE and PROVIDE (plain OK). Streamed answers, as the go daemon sends them: an OK
response with a BEGIN ``DHTResponse``, then one bare ``DHTResponse`` VALUE per result,
then a bare END —
FIND_PROVIDERS and FIND_PEERS_CONNECTED_TO_PEER (``peer``), GET_CLOSEST_PEERS (``value`` =
peer id), SEARCH_VALUE (``value``).
"""

from __future__ import annotations

import trio

from ..errors import NodeError
from ..proto import daemon_pb2 as pb
from .codec import ok_response
from .ports import ControlNode

DEFAULT_TIMEOUT = 60.0


def _node_error(msg: str) -> NodeError:
    return NodeError(msg)


def _stream(values: list[pb.DHTResponse]) -> list:
    """As the go daemon streams: a Response carrying BEGIN, then bare DHTResponses, then END."""
    out: list = [ok_response(dht=pb.DHTResponse(type=pb.DHTResponse.BEGIN))]
    out += values
    out.append(pb.DHTResponse(type=pb.DHTResponse.END))
    return out


async def handle_dht(node: ControlNode, req: pb.DHTRequest):
    dht = node.dht
    timeout = DEFAULT_TIMEOUT
    if req.HasField("timeout") and req.timeout > 0:
        timeout = float(min(req.timeout, 3600))
    t = req.type
    with trio.move_on_after(timeout) as scope:
        if t == pb.DHTRequest.FIND_PEER:
            peer = node.parse_peer_id(req.peer).to_bytes()
            addrs = await dht.find_peer(peer)
            if not addrs:
                raise _node_error("peer not found")
            return ok_response(dht=pb.DHTResponse(
                type=pb.DHTResponse.VALUE, peer=pb.PeerInfo(id=peer, addrs=addrs)))
        if t == pb.DHTRequest.FIND_PROVIDERS:
            key = _cid_key(req)
            count = req.count if req.HasField("count") and req.count > 0 else 20
            provs = await dht.find_providers(key, count)
            return _stream([pb.DHTResponse(type=pb.DHTResponse.VALUE,
                                           peer=pb.PeerInfo(id=p.id, addrs=p.addrs))
                            for p in provs])
        if t == pb.DHTRequest.GET_CLOSEST_PEERS:
            if not req.key:
                raise _node_error("GET_CLOSEST_PEERS needs a key")
            peers = await dht.closest_peers(bytes(req.key))
            return _stream([pb.DHTResponse(type=pb.DHTResponse.VALUE, value=p) for p in peers])
        if t == pb.DHTRequest.FIND_PEERS_CONNECTED_TO_PEER:
            peer = node.parse_peer_id(req.peer).to_bytes()
            peers = await dht.closest_peers(peer)
            return _stream([pb.DHTResponse(type=pb.DHTResponse.VALUE, peer=pb.PeerInfo(
                id=p, addrs=node.peer_addrs(p))) for p in peers])
        if t == pb.DHTRequest.GET_PUBLIC_KEY:
            peer = node.parse_peer_id(req.peer).to_bytes()
            values = await dht.get_values(b"/pk/" + peer)
            if not values:
                raise _node_error("public key not found")
            return ok_response(dht=pb.DHTResponse(type=pb.DHTResponse.VALUE, value=values[0]))
        if t in (pb.DHTRequest.GET_VALUE, pb.DHTRequest.SEARCH_VALUE):
            if not req.key:
                raise _node_error("GET_VALUE needs a key")
            values = await dht.get_values(bytes(req.key))
            if not values:
                raise _node_error("value not found")
            if t == pb.DHTRequest.GET_VALUE:
                return ok_response(dht=pb.DHTResponse(type=pb.DHTResponse.VALUE, value=values[0]))
            return _stream([pb.DHTResponse(type=pb.DHTResponse.VALUE, value=v) for v in values])
        if t == pb.DHTRequest.PUT_VALUE:
            if not req.key or not req.HasField("value"):
                raise _node_error("PUT_VALUE needs a key and a value")
            try:
                await dht.put_value(bytes(req.key), bytes(req.value))
            except ValueError as exc:
                raise _node_error(str(exc)) from None
            return ok_response()
        if t == pb.DHTRequest.PROVIDE:
            await dht.provide(_cid_key(req))
            return ok_response()
        raise _node_error(f"unknown DHT request type {t}")
    if scope.cancelled_caught:
        raise _node_error(f"DHT request timed out after {timeout:g} s")


def _cid_key(req: pb.DHTRequest) -> bytes:
    """Provider records are keyed by the CID's multihash, as in go and js."""
    from ..blocks.cid import CID
    from ..errors import InvalidCID

    if not req.cid:
        raise _node_error("this DHT request needs a cid")
    try:
        return CID.decode(bytes(req.cid)).multihash
    except InvalidCID as exc:
        raise _node_error(f"malformed cid: {exc}") from None
