"""A read-only IPFS path gateway: ``GET|HEAD /ipfs/CID[/path]``.

As the IPFS HTTP gateway specs say (path gateway, trustless gateway): UnixFS files with
a Content-Type from the name (or sniffed), byte ranges, directories as an HTML listing
(or their ``index.html``), and verifiable responses on ``?format=raw`` /
``Accept: application/vnd.ipld.raw`` (the block itself) and ``?format=car`` /
``application/vnd.ipld.car`` (a CARv1 of the path's blocks and the whole DAG under it).

Nothing here trusts its input: the path is parsed strictly (:func:`parse_gateway_path`:
no ``.``/``..`` segments, no ``/`` or NUL inside a name, bounded length), every block is
checked against its CID before a byte of it is sent, a block that is neither stored nor
found within ``block_timeout`` ends the request (504 before the head, a cut-off body
after), and the DAG is kept from gc while it is served.
"""

from __future__ import annotations

import html
import mimetypes
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from urllib.parse import quote, unquote

import trio

from ..blocks import dagpb, unixfs
from ..blocks.cid import CID
from ..blocks.multicodec import Codec
from ..errors import (
    BlockNotFound,
    CorruptBlock,
    InvalidCID,
    InvalidDagPB,
    InvalidUnixFS,
    P2PDError,
)
from .ranges import RangeNotSatisfiable, content_range, multipart_parts, parse_ranges
from .server import BodyAborted, Response, text_response
from .wire import Request

MAX_PATH = 4096
MAX_SEGMENTS = 64
MAX_DEPTH = 32
#: Seconds one block may take to arrive (from the blockstore or Bitswap).
BLOCK_TIMEOUT = 30.0
#: Directory entries listed on one page.
MAX_LISTING = 10_000
CAR_TYPE = "application/vnd.ipld.car"
RAW_TYPE = "application/vnd.ipld.raw"
IMMUTABLE = "public, max-age=29030400, immutable"


class GatewayError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class GatewayPath:
    root: CID
    segments: tuple[str, ...]
    trailing_slash: bool


def parse_gateway_path(path: str) -> GatewayPath:
    """``/ipfs/CID[/name...][/]`` (percent-encoded, as in a request target)."""
    if len(path) > MAX_PATH:
        raise GatewayError(414, f"path of {len(path)} characters is too long")
    if not path.startswith("/ipfs/"):
        raise GatewayError(404, "only /ipfs/CID[/path] is served here")
    raw = path[len("/ipfs/"):].split("/")
    trailing = len(raw) > 1 and raw[-1] == ""
    parts = []
    for piece in raw:
        try:
            name = unquote(piece, errors="strict")
        except UnicodeDecodeError:
            raise GatewayError(400, "path segment is not UTF-8 after percent-decoding") from None
        if name == "":
            continue  # "a//b", a trailing "/"
        if name in (".", "..") or "/" in name or "\0" in name or "\\" in name:
            raise GatewayError(400, f"path segment {name!r} cannot name a directory entry")
        parts.append(name)
    if not parts:
        raise GatewayError(400, "no CID in the path: /ipfs/CID[/path]")
    if len(parts) - 1 > MAX_SEGMENTS:
        raise GatewayError(400, f"at most {MAX_SEGMENTS} path segments are resolved")
    try:
        root = CID.decode(parts[0])
    except InvalidCID as exc:
        raise GatewayError(400, f"invalid CID {parts[0][:80]!r}: {exc}") from None
    return GatewayPath(root, tuple(parts[1:]), trailing)


def response_format(request: Request) -> str:
    """"unixfs" (a file or listing), "raw" or "car", from ``?format=`` or Accept."""
    fmt = request.query.get("format", "")
    if fmt:
        if fmt not in ("raw", "car"):
            raise GatewayError(400, f"unsupported format {fmt[:40]!r} (raw or car)")
        return fmt
    accept = request.header("accept").lower()
    for item in accept.split(","):
        media = item.split(";")[0].strip()
        if media == RAW_TYPE:
            return "raw"
        if media == CAR_TYPE:
            return "car"
    return "unixfs"


class Gateway:
    def __init__(self, source, *, block_timeout: float = BLOCK_TIMEOUT) -> None:
        self.source = source
        self.block_timeout = block_timeout

    async def block(self, cid: CID) -> bytes:
        try:
            data = await self.source.get_block(cid, self.block_timeout)
        except trio.TooSlowError:
            raise GatewayError(504, f"block {cid} was not found within "
                                    f"{self.block_timeout:g} s (nobody we reach has it)") from None
        except CorruptBlock as exc:
            raise GatewayError(502, str(exc)) from None
        except BlockNotFound as exc:
            raise GatewayError(504, str(exc)) from None
        if not cid.verify(data):
            raise GatewayError(502, f"block {cid} does not match its CID; not served")
        return data

    async def handle(self, request: Request) -> Response:
        hold = AsyncExitStack()  # the DAG is kept from gc until the body has been sent
        try:
            gp = parse_gateway_path(request.path)
            fmt = response_format(request)
            if not self.source.has_blocks:
                raise GatewayError(503, "this node has no blockstore (Bitswap is off)")
            await hold.enter_async_context(self.source.holding(gp.root))
            response = await self._serve(request, gp, fmt)
        except GatewayError as exc:
            await hold.aclose()
            return text_response(exc.status, str(exc))
        except (InvalidDagPB, InvalidUnixFS) as exc:
            await hold.aclose()
            return text_response(502, f"the DAG is not valid UnixFS: {exc}")
        except BaseException:
            await hold.aclose()
            raise
        etag = next((v for k, v in response.headers if k == "Etag"), None)
        wanted = request.header("if-none-match")
        if etag and wanted and response.status == 200 and (
                wanted.strip() == "*" or etag in [t.strip() for t in wanted.split(",")]):
            if not isinstance(response.body, bytes):
                await response.body.aclose()
            await hold.aclose()
            return Response(304, [(k, v) for k, v in response.headers
                                  if k in ("Etag", "Cache-Control", "X-Ipfs-Path")], b"")
        if isinstance(response.body, bytes):
            await hold.aclose()
        else:
            response.body = HeldBody(response.body, hold)
        return response

    async def _resolve(self, gp: GatewayPath) -> tuple[CID, bytes, list[tuple[CID, bytes]]]:
        """The CID and block at the end of the path, and the blocks walked on the way."""
        cid, block = gp.root, await self.block(gp.root)
        walked = []
        for name in gp.segments:
            walked.append((cid, block))
            if cid.codec != Codec.DAG_PB:
                raise GatewayError(404, f"{cid} is not a directory; it has no entry {name!r}")
            node = dagpb.decode_node(block)
            data = unixfs.decode_node(node)
            if data.type is unixfs.DataType.HAMT_SHARD:
                raise GatewayError(501, f"{cid} is a HAMT-sharded directory; not supported yet")
            if data.type is not unixfs.DataType.DIRECTORY:
                raise GatewayError(404, f"{cid} is a file; it has no entry {name!r}")
            found = next((link.cid for link in node.links if link.name == name), None)
            if found is None:
                raise GatewayError(404, f"no entry {name!r} in directory {cid}")
            cid, block = found, await self.block(found)
        return cid, block, walked

    async def _serve(self, request: Request, gp: GatewayPath, fmt: str) -> Response:
        cid, block, walked = await self._resolve(gp)
        roots = ",".join(str(c) for c in [*(c for c, _ in walked), cid])
        base = [("X-Ipfs-Path", request.path), ("X-Ipfs-Roots", roots),
                ("Cache-Control", IMMUTABLE)]
        if fmt == "raw":
            return Response(200, [*base, ("Content-Type", RAW_TYPE), ("Etag", f'"{cid}.raw"'),
                                  ("X-Content-Type-Options", "nosniff"),
                                  ("Content-Disposition", f'attachment; filename="{cid}.bin"')],
                            block)
        if fmt == "car":
            miss = trio.Event()
            return Response(200, [*base, ("Content-Type", f"{CAR_TYPE}; version=1"),
                                  ("Etag", f'"{cid}.car"'), ("X-Content-Type-Options", "nosniff"),
                                  ("Content-Disposition",
                                   f'attachment; filename="{gp.root}.car"')],
                            self._car(gp.root, walked, cid, block, miss),
                            background=partial(self._prefetch, cid, miss))
        if cid.codec == Codec.RAW:
            return await self._file(request, gp, cid, block, len(block), base)
        if cid.codec != Codec.DAG_PB:
            raise GatewayError(501, f"{cid} is {cid.codec.name.lower()}; ask with ?format=raw")
        node = dagpb.decode_node(block)
        data = unixfs.decode_node(node)
        if data.is_file:
            return await self._file(request, gp, cid, block, data.content_size(), base)
        if data.type is unixfs.DataType.DIRECTORY:
            if not gp.trailing_slash:
                return Response(301, [("Location", request.path + "/")], b"")
            index = next((link.cid for link in node.links if link.name == "index.html"), None)
            if index is not None:
                gp = GatewayPath(gp.root, (*gp.segments, "index.html"), False)
                iblock = await self.block(index)
                size = (len(iblock) if index.codec == Codec.RAW
                        else unixfs.decode_node(dagpb.decode_node(iblock)).content_size())
                return await self._file(request, gp, index, iblock, size, base)
            return self._listing(request, gp, cid, node, base)
        if data.type is unixfs.DataType.HAMT_SHARD:
            raise GatewayError(501, f"{cid} is a HAMT-sharded directory; not supported yet")
        raise GatewayError(501, f"{cid} is a UnixFS {data.type.name.lower()}; not served")

    # -- files ---------------------------------------------------------------------------
    async def _file(self, request: Request, gp: GatewayPath, cid: CID, block: bytes, size: int,
                    base: list[tuple[str, str]]) -> Response:
        headers = [*base, ("Etag", f'"{cid}"'), ("Accept-Ranges", "bytes"),
                   ("X-Content-Type-Options", "nosniff")]
        wanted_name = request.query.get("filename", "")
        if wanted_name or request.query.get("download") == "true":
            shown = _safe_filename(wanted_name or (gp.segments[-1] if gp.segments else str(cid)))
            kind = "attachment" if request.query.get("download") == "true" else "inline"
            headers.append(("Content-Disposition", f'{kind}; filename="{shown}"'))
        try:
            spans = parse_ranges(request.header("range") or None, size)
        except RangeNotSatisfiable:
            return Response(416, [*headers, ("Content-Range", f"bytes */{size}")], b"")
        if spans is not None and len(spans) > 1:
            return await self._multipart(request, gp, cid, block, size, spans, headers,
                                         wanted_name)
        span = spans[0] if spans else None
        first, last = span if span is not None else (0, size - 1)
        status = 206 if span is not None else 200
        if status == 206:
            headers.append(("Content-Range", content_range(first, last, size)))
        miss = trio.Event() if span is None else None  # a whole file: prefetch on a miss
        body = self._range(cid, block, first, last + 1, miss)
        head_chunk = await _first_chunk(body) if size else b""
        name = gp.segments[-1] if gp.segments else wanted_name
        headers.append(("Content-Type", content_type(name, head_chunk if first == 0 else b"")))
        return Response(status, headers, _prepend(head_chunk, body), length=last + 1 - first,
                        background=None if miss is None else partial(self._prefetch, cid, miss))

    async def _multipart(self, request: Request, gp: GatewayPath, cid: CID, block: bytes,
                         size: int, spans: list[tuple[int, int]],
                         headers: list[tuple[str, str]], wanted_name: str) -> Response:
        """Several ranges: one ``multipart/byteranges`` body, each part with its
        Content-Range (RFC 9110 14.6); only the blocks holding them are fetched."""
        name = gp.segments[-1] if gp.segments else wanted_name
        first_body = self._range(cid, block, *_stop(spans[0]))
        head_chunk = await _first_chunk(first_body)
        kind = content_type(name, head_chunk if spans[0][0] == 0 else b"")
        boundary = f"p2pd-{cid}"[:70]
        heads, tail, length = multipart_parts(spans, size, kind, boundary)

        async def body() -> AsyncIterator[bytes]:
            yield heads[0]
            async for piece in _prepend(head_chunk, first_body):
                yield piece
            for head, span in zip(heads[1:], spans[1:], strict=True):
                yield head
                part = self._range(cid, block, *_stop(span))
                try:
                    async for piece in part:
                        yield piece
                finally:
                    await part.aclose()
            yield tail

        return Response(206, [*headers, ("Content-Type",
                                         f"multipart/byteranges; boundary={boundary}")],
                        body(), length=length)

    async def _prefetch(self, cid: CID, miss: trio.Event) -> None:
        """Runs beside the body (the server cancels it when the body ends): once a block
        is missing, Bitswap fetches the whole DAG with its sessions, many blocks at once,
        instead of the walk asking for one block after another."""
        await miss.wait()
        await self.source.prefetch(cid, self.block_timeout)

    def _range(self, cid: CID, block: bytes, start: int, stop: int,
               miss: trio.Event | None = None) -> AsyncIterator[bytes]:
        return self._walk(cid, block, None, 0, start, stop, 0, miss)

    async def _walk(self, cid: CID, block: bytes, expected: int | None, base: int, start: int,
                    stop: int, depth: int, miss: trio.Event | None) -> AsyncIterator[bytes]:
        """Bytes ``[start, stop)`` of the file ``cid`` whose content begins at ``base``;
        only the blocks that hold them are fetched, each checked against its parent."""
        if depth > MAX_DEPTH:
            raise InvalidUnixFS(f"UnixFS DAG deeper than {MAX_DEPTH} levels")
        if cid.codec == Codec.RAW:
            if expected is not None and len(block) != expected:
                raise InvalidUnixFS(f"raw leaf {cid} holds {len(block)} bytes, its parent "
                                    f"says {expected}")
            lo, hi = max(start - base, 0), min(stop - base, len(block))
            if lo < hi:
                yield block[lo:hi]
            return
        if cid.codec != Codec.DAG_PB:
            raise InvalidUnixFS(f"{cid} is not a UnixFS node")
        node = dagpb.decode_node(block)
        msg = unixfs.decode_node(node)
        if not msg.is_file:
            raise InvalidUnixFS(f"{cid} is a {msg.type.name} node, not file content")
        if expected is not None and msg.content_size() != expected:
            raise InvalidUnixFS(f"node {cid} holds {msg.content_size()} bytes, its parent "
                                f"says {expected}")
        pos = base
        if msg.data:
            lo, hi = max(start - pos, 0), min(stop - pos, len(msg.data))
            if lo < hi:
                yield msg.data[lo:hi]
            pos += len(msg.data)
        for link, size in zip(node.links, msg.blocksizes, strict=True):
            if pos >= stop:
                break
            if pos + size > start:
                child = await self._block_in_body(link.cid, miss)
                async for piece in self._walk(link.cid, child, size, pos, start, stop,
                                              depth + 1, miss):
                    yield piece
            pos += size

    async def _block_in_body(self, cid: CID, miss: trio.Event | None = None) -> bytes:
        if miss is not None and not miss.is_set() and not self.source.has_block(cid):
            miss.set()  # the first block we lack: fetch the rest of the DAG in parallel
        try:
            return await self.block(cid)
        except GatewayError as exc:  # the head is out: the body is cut short
            raise BlockNotFound(str(exc)) from None

    # -- directories ---------------------------------------------------------------------
    def _listing(self, request: Request, gp: GatewayPath, cid: CID, node,
                 base: list[tuple[str, str]]) -> Response:
        title = html.escape(f"/ipfs/{gp.root}/" + "/".join(gp.segments))
        rows = []
        if gp.segments:
            rows.append('<tr><td><a href="../">..</a></td><td></td><td></td></tr>')
        for link in node.links[:MAX_LISTING]:
            name = link.name or ""
            rows.append(f'<tr><td><a href="{quote(name)}">{html.escape(name)}</a></td>'
                        f'<td class="cid">{link.cid}</td><td>{link.tsize or 0}</td></tr>')
        body = (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title>"
                "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}"
                ".cid{font-family:monospace;color:#666}</style></head><body>"
                f"<h1>{title}</h1><p>{cid}</p><table><tr><th>name</th><th>cid</th>"
                f"<th>size</th></tr>{''.join(rows)}</table></body></html>").encode()
        return Response(200, [*base, ("Content-Type", "text/html; charset=utf-8"),
                              ("Etag", f'"DirIndex-{cid}"')], body)

    # -- CAR -----------------------------------------------------------------------------
    async def _car(self, root: CID, walked: list[tuple[CID, bytes]], cid: CID,
                   block: bytes, miss: trio.Event) -> AsyncIterator[bytes]:
        """CARv1: the header (roots: the path's root), the blocks walked to the end of the
        path, then every block of the DAG under it, depth first."""
        yield car_header(root)
        for c, b in walked:
            yield car_block(c, b)
        stack = [(cid, block, 0)]
        seen: set[bytes] = set()
        while stack:
            c, b, depth = stack.pop()
            if c.multihash in seen:
                continue
            seen.add(c.multihash)
            yield car_block(c, b)
            if c.codec != Codec.DAG_PB or depth >= MAX_DEPTH:
                continue
            for link in reversed(dagpb.decode_node(b).links):
                if link.cid.multihash not in seen:
                    stack.append((link.cid, await self._block_in_body(link.cid, miss),
                                  depth + 1))


class HeldBody:
    """A streamed body that keeps its DAG's hold until it is closed, whether or not it was
    ever iterated (a HEAD, a client gone before the first chunk); a failure after the
    head is :class:`BodyAborted`."""

    def __init__(self, body: AsyncIterator[bytes], hold: AsyncExitStack) -> None:
        self._body = body
        self._hold = hold

    def __aiter__(self) -> HeldBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._body.__anext__()
        except P2PDError as exc:  # a block missing, corrupt or malformed mid-body
            raise BodyAborted(str(exc)) from None

    async def aclose(self) -> None:
        try:
            await self._body.aclose()
        finally:
            await self._hold.aclose()


def car_header(root: CID) -> bytes:
    """The CARv1 header: DAG-CBOR ``{"roots": [root], "version": 1}``."""
    link = b"\x00" + root.to_bytes()
    head = bytes([0x58, len(link)]) if len(link) < 256 else b"\x59" + len(link).to_bytes(2, "big")
    cbor = b"\xa2\x65roots\x81\xd8\x2a" + head + link + b"\x67version\x01"
    return dagpb.varint_bytes(len(cbor)) + cbor


def car_block(cid: CID, block: bytes) -> bytes:
    raw = cid.to_bytes()
    return dagpb.varint_bytes(len(raw) + len(block)) + raw + block


def _safe_filename(name: str) -> str:
    """A name for Content-Disposition: printable ASCII, no quotes or path separators."""
    cleaned = "".join(c if 32 <= ord(c) < 127 and c not in '"\\/;' else "_" for c in name)
    return cleaned[:200] or "download"


async def _first_chunk(body: AsyncIterator[bytes]) -> bytes:
    """The body's first bytes, read before the head is sent: a missing block is then a
    504 rather than a cut-off body, and the bytes can be sniffed for a Content-Type."""
    try:
        return await body.__anext__()
    except StopAsyncIteration:
        return b""
    except BaseException:
        await body.aclose()
        raise


def _stop(span: tuple[int, int]) -> tuple[int, int]:
    """``(first, last)`` inclusive as ``(start, stop)``."""
    return span[0], span[1] + 1


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"),
          (b"PK\x03\x04", "application/zip"), (b"\x1f\x8b", "application/gzip"))


def content_type(name: str, head: bytes) -> str:
    """From the file name's extension, else sniffed from its first bytes."""
    if name:
        guessed, _ = mimetypes.guess_type(name, strict=False)
        if guessed:
            return guessed + ("; charset=utf-8" if guessed.startswith("text/") else "")
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    start = head[:512].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "text/html; charset=utf-8"
    if start.startswith(b"<svg") or (start.startswith(b"<?xml") and b"<svg" in start):
        return "image/svg+xml"
    sample = head[:1024]
    try:
        sample.decode("utf-8")
        text = b"\0" not in sample
    except UnicodeDecodeError as exc:  # a character cut at the sample's end is still text
        text = exc.start >= len(sample) - 3 and b"\0" not in sample
    return "text/plain; charset=utf-8" if text and head else "application/octet-stream"
