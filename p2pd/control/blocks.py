"""The BLOCKS extension of the control protocol (type 100): add, cat, get, pins, gc, blocks.

Answers are written straight to the client's socket: ADD and GET may send progress
responses (``blocks.progress = true``, four a second) before the final one; CAT sends
one response with the file size and then the file's bytes raw until it closes the
connection. Every failure is an ERROR response with a message for the user.

A request lives as long as its client: while it is served, a watcher peeks at the client's
socket, and when the client hangs up (end of file, a reset) the work is cancelled, so a
``p2pd cat`` interrupted with Ctrl-C leaves no fetch behind. A client must therefore keep
its sending side open until it has the answer (the ``p2pd`` CLI and p2pclient do).
"""

from __future__ import annotations

import json
import logging
import os
import socket

import outcome
import trio

from ..blocks.cid import CID
from ..blocks.importer import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE
from ..errors import InvalidCID, P2PDError
from ..proto import daemon_pb2 as pb
from .codec import encode_message, error_response, ok_response
from .ports import ControlNode

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.25
#: Entries an ADD answer lists (name, CID, size each); a bigger tree's answer says how
#: many more there were, so the answer stays well inside one control frame.
MAX_ADD_ENTRIES = 10_000
B = pb.BlocksRequest


async def serve_blocks(node: ControlNode, request: pb.Request, stream) -> bool:
    """Answer one BLOCKS request; returns False when the connection must close (CAT)."""
    repo = node.repo
    if repo is None:
        await stream.send_all(encode_message(error_response(
            "blocks are not enabled on this daemon ([bitswap] enabled = false)")))
        return True
    if not request.HasField("blocks"):
        await stream.send_all(encode_message(error_response("BLOCKS request without blocks")))
        return True
    req = request.blocks
    answered: outcome.Outcome | None = None

    async def serve() -> None:
        nonlocal answered
        # Captured, not raised in the nursery: the server must see the error itself,
        # not an exception group around it.
        try:
            answered = outcome.Value(await _serve(repo, req, stream))
        except Exception as exc:
            answered = outcome.Error(exc)

    with trio.CancelScope() as served:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when_client_leaves, stream, served)
            await serve()
            nursery.cancel_scope.cancel()
    if answered is None:  # only the watcher cancels ``served``
        log.info("BLOCKS %s cancelled: its client went away", B.Type.Name(req.type))
        return False
    return answered.unwrap()


async def _serve(repo, req: pb.BlocksRequest, stream) -> bool:
    try:
        if req.type == B.CAT:
            await _cat(repo, req, stream)
            return False
        responses = await _answer(repo, req, stream)
    except (P2PDError, OSError, ValueError) as exc:
        await stream.send_all(encode_message(error_response(_message(exc))))
        return req.type != B.CAT
    for one in responses:
        await stream.send_all(encode_message(one))
    return True


async def _cancel_when_client_leaves(stream, served: trio.CancelScope) -> None:
    """Cancel ``served`` when the client hangs up. Peeks (``MSG_PEEK``), so bytes of a
    next request stay for the server to read; once such bytes arrive there is nothing
    more to learn and the watch ends."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return
    try:
        data = await sock.recv(1, socket.MSG_PEEK)
    except OSError:  # reset by the peer: gone as well
        data = b""
    if not data:
        served.cancel()


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    return str(exc) or type(exc).__name__


def _cid(req: pb.BlocksRequest) -> CID:
    if not req.cid:
        raise ValueError("this request needs a cid")
    try:
        return CID.decode(bytes(req.cid))
    except InvalidCID as exc:
        raise ValueError(f"malformed cid: {exc}") from None


def _timeout(req: pb.BlocksRequest) -> float | None:
    return float(min(req.timeout, 86400)) if req.HasField("timeout") and req.timeout > 0 else None


def _path(req: pb.BlocksRequest) -> str:
    if not req.path:
        raise ValueError("this request needs a path")
    if not isinstance(req.path, str):  # proto2 hands back bytes for invalid UTF-8
        raise ValueError("path is not valid UTF-8")
    if not os.path.isabs(req.path):
        raise ValueError(f"path {req.path!r} must be absolute (the daemon has its own cwd)")
    return req.path


async def _with_progress(stream, req: pb.BlocksRequest, progress, work):
    """Run ``work()`` and, if the client asked, report progress while it runs."""
    if not req.progress:
        return await work()
    result: outcome.Outcome | None = None

    async def run(cancel: trio.CancelScope) -> None:
        nonlocal result
        # Caught here and re-raised below, unwrapped: an error raised inside the nursery
        # would reach the caller inside an exception group, and the client would get no
        # answer at all instead of the error's text.
        try:
            result = outcome.Value(await work())
        except Exception as exc:
            result = outcome.Error(exc)
        cancel.cancel()

    def report() -> bytes:
        return encode_message(ok_response(blocks=pb.BlocksResponse(
            progress=True, done=progress.done, total=progress.total,
            blocks=progress.blocks, peers=progress.peers)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, nursery.cancel_scope)
        try:
            while True:
                await trio.sleep(PROGRESS_INTERVAL)
                await stream.send_all(report())
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if result is None:  # the client is gone: stop the work too
                result = outcome.Error(exc)
            nursery.cancel_scope.cancel()
    if isinstance(result, outcome.Value):
        await stream.send_all(report())  # the bar ends where the work did, even a short one
    return result.unwrap()


async def _answer(repo, req: pb.BlocksRequest, stream) -> list[pb.Response]:
    from ..repo import Progress

    t = req.type
    if t == B.ADD:
        path = _path(req)
        chunk = req.chunkSize if req.HasField("chunkSize") else DEFAULT_CHUNK_SIZE
        if not 1 <= chunk <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE}")
        if req.cidVersion not in (0, 1):
            raise ValueError("cid version must be 0 or 1")
        if not os.path.lexists(path):
            raise ValueError(f"{path}: no such file or directory")
        progress = Progress()
        raw = req.rawLeaves if req.HasField("rawLeaves") else None
        pin = req.pin if req.HasField("pin") else True
        entries: list = []
        result = await _with_progress(stream, req, progress, lambda: repo.add(
            path, chunk_size=chunk, cid_version=req.cidVersion, raw_leaves=raw, pin=pin,
            progress=progress, entries=entries))
        # The root is last: a long list keeps its last entries.
        listed = entries[-MAX_ADD_ENTRIES:]
        details = {"entries": listed, "more": len(entries) - len(listed)}
        return [ok_response(blocks=pb.BlocksResponse(
            cid=result.cid.to_bytes(), size=result.size, blocks=progress.blocks,
            stats=json.dumps(details)))]
    if t == B.GET:
        cid, dest = _cid(req), _path(req)
        if os.path.lexists(dest):
            raise ValueError(f"{dest} already exists")
        progress = Progress()
        size = await _with_progress(stream, req, progress, lambda: repo.get(
            cid, dest, timeout=_timeout(req), offline=req.offline, progress=progress))
        return [ok_response(blocks=pb.BlocksResponse(
            cid=cid.to_bytes(), size=size, blocks=progress.blocks, peers=progress.peers))]
    if t == B.PIN_ADD:
        cid = _cid(req)
        await repo.pin_add(cid, timeout=_timeout(req), offline=req.offline)
        return [ok_response(blocks=pb.BlocksResponse(cid=cid.to_bytes()))]
    if t == B.PIN_RM:
        cid = _cid(req)
        repo.pin_rm(cid)
        return [ok_response(blocks=pb.BlocksResponse(cid=cid.to_bytes()))]
    if t == B.PIN_LS:
        pins = [pb.PinInfo(cid=p.cid.to_bytes(), name=p.name, created=p.created)
                for p in repo.pin_ls()]
        return [ok_response(blocks=pb.BlocksResponse(pins=pins))]
    if t == B.GC:
        removed, freed = await repo.gc()
        return [ok_response(blocks=pb.BlocksResponse(blocks=removed, size=freed))]
    if t == B.BLOCK_GET:
        cid = _cid(req)
        data = await repo.block_get(cid, timeout=_timeout(req), offline=req.offline)
        return [ok_response(blocks=pb.BlocksResponse(cid=cid.to_bytes(), data=data,
                                                     size=len(data)))]
    if t == B.BLOCK_PUT:
        from ..blocks.multicodec import Codec

        codec = req.codec if req.HasField("codec") else Codec.RAW
        version = req.cidVersion if req.HasField("cidVersion") else 1
        cid = await repo.block_put(bytes(req.data), codec, version)
        return [ok_response(blocks=pb.BlocksResponse(cid=cid.to_bytes(), size=len(req.data)))]
    if t == B.BLOCK_STAT:
        cid = _cid(req)
        if not repo.store.has(cid):
            await repo.block_get(cid, timeout=_timeout(req), offline=req.offline)
        return [ok_response(blocks=pb.BlocksResponse(cid=cid.to_bytes(),
                                                     size=repo.block_size(cid)))]
    if t == B.STAT:
        return [ok_response(blocks=pb.BlocksResponse(stats=json.dumps(await repo.stats())))]
    if t == B.VERIFY:
        report = await repo.verify()
        return [ok_response(blocks=pb.BlocksResponse(stats=json.dumps(report)))]
    raise ValueError(f"unknown BLOCKS request type {t}")


async def _cat(repo, req: pb.BlocksRequest, stream) -> None:
    cid = _cid(req)
    async with repo.holding(cid):
        size = await repo.cat_size(cid, timeout=_timeout(req), offline=req.offline)
        await stream.send_all(encode_message(ok_response(blocks=pb.BlocksResponse(
            cid=cid.to_bytes(), size=size))))
        try:
            async for piece in repo.cat(cid):
                await stream.send_all(piece)
        except (P2PDError, OSError) as exc:
            # The header is out: the client sees fewer bytes than announced and says so.
            log.warning("cat %s stopped: %s", cid, exc)
