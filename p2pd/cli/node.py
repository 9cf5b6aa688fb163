"""``p2pd id|peers|connect|disconnect|ping|status``: client subcommands of a running daemon.

Human-readable output by default, one JSON document with ``--json``. Errors (no
daemon, a refused request) become :class:`~p2pd.errors.P2PDError`, which the CLI
prints as one line.
"""

from __future__ import annotations

import argparse
import json
import time

from ..blocks.multibase import b58decode, b58encode
from ..errors import P2PDError
from .client import ControlClient

COMMANDS = ("id", "peers", "connect", "disconnect", "ping", "status", "stats")


def add_parsers(sub) -> None:
    """Register the subcommands on an argparse subparsers object."""

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--api",
            metavar="MULTIADDR",
            default=None,
            help="daemon control address (default /unix/$P2PD_HOME/p2pd.sock)",
        )
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        return p

    common(sub.add_parser("id", help="show the daemon's peer id and addresses"))
    common(sub.add_parser("peers", help="list connected peers"))
    p = common(sub.add_parser("connect", help="connect to a peer: MULTIADDR ending in /p2p/ID"))
    p.add_argument("address", help="e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...")
    p = common(sub.add_parser("disconnect", help="close all connections to a peer"))
    p.add_argument("peer", help="peer id")
    p = common(sub.add_parser("ping", help="measure round trips to a peer"))
    p.add_argument("peer", help="peer id (or MULTIADDR ending in /p2p/ID: connects first)")
    p.add_argument("-n", "--count", type=int, default=3, help="number of pings (default 3)")
    common(sub.add_parser("status", help="is a daemon running? id, addresses, peer count"))
    stats = sub.add_parser("stats", help="stats bw: bytes and rates in and out")
    stats_sub = stats.add_subparsers(dest="stats_command", required=True)
    p = common(stats_sub.add_parser("bw", help="bytes and rates in and out: in all, of one "
                                               "protocol or of one peer"))
    p.add_argument("--proto", default=None, help="only this protocol, e.g. /ipfs/bitswap/1.2.0")
    p.add_argument("--peer", default=None, help="only this peer (peer id)")


def run(args: argparse.Namespace) -> int:
    client = ControlClient.for_address(args.api, args.timeout)
    return _HANDLERS[args.command](client, args)


def _peer_bytes(text: str) -> bytes:
    try:
        raw = b58decode(text)
    except Exception:
        raw = b""
    if len(raw) < 4 or raw[0] not in (0x00, 0x12):  # identity or sha2-256 multihash
        raise P2PDError(f"{text!r} is not a peer id (expected base58, e.g. 12D3KooW... or Qm...)")
    return raw


def _split_p2p(address: str) -> tuple[bytes, bytes | None]:
    """``/ip4/.../p2p/ID`` -> (peer id bytes, multiaddr bytes of the rest or None)."""
    import multiaddr

    parts = address.rstrip("/").split("/")
    if len(parts) < 3 or parts[-2] not in ("p2p", "ipfs"):
        raise P2PDError(f"{address!r} must end in /p2p/<peer id>")
    peer = _peer_bytes(parts[-1])
    rest = "/".join(parts[:-2])
    if not rest:
        return peer, None
    try:
        return peer, multiaddr.Multiaddr(rest).to_bytes()
    except Exception as exc:
        raise P2PDError(f"invalid multiaddr {rest!r}: {exc}") from None


def _addr_text(raw: bytes) -> str:
    from ..maddr import text

    return text(raw)


def _emit(args, data, text: str) -> int:
    print(json.dumps(data) if args.json else text, flush=True)
    return 0


def _cmd_id(client: ControlClient, args) -> int:
    peer, addrs = client.identify()
    pid = b58encode(peer)
    addrs_text = [_addr_text(a) for a in addrs]
    out = {"ID": pid, "Addresses": addrs_text}
    lines = [f"Peer ID: {pid}", "Addresses:", *(f"  {a}" for a in addrs_text)]
    try:  # our STATUS says how reachable those are (another daemon may not have it)
        status = client.status()
    except Exception:
        status = None
    if status is not None:
        out["Reachability"] = status.get("Reachability")
        out["External"] = status.get("External") or []
        out["Reservations"] = status.get("Reservations") or []
        mapped = (status.get("PortMap") or {}).get("mappings") or {}
        out["MappedPorts"] = mapped
        lines.append(f"Reachability: {out['Reachability']}")
        for title, key in (("External addresses", "External"),
                           ("Relay reservations", "Reservations")):
            if out[key]:
                lines += [f"{title}:", *(f"  {a}" for a in out[key])]
        if mapped:
            lines.append("Mapped ports: " + ", ".join(f"{k} -> {v}" for k, v in mapped.items()))
    return _emit(args, out, "\n".join(lines))


def _cmd_peers(client: ControlClient, args) -> int:
    peers = client.list_peers()
    try:  # our STATUS names each connection's transport (another daemon may not have it)
        conns = client.status().get("Connections") or []
    except Exception:
        conns = []
    rows = [{"ID": b58encode(p.id), "Addrs": [_addr_text(a) for a in p.addrs]} for p in peers]
    for r in rows:
        mine = [c for c in conns if c.get("Peer") == r["ID"]]
        if mine:
            r["Connections"] = [{k: c.get(k) for k in ("Addr", "Direction", "Transport",
                                                        "Security", "Muxer")} for c in mine]
    lines = []
    for r in rows:
        line = r["Addrs"][0] if r["Addrs"] else ""
        if not line.endswith(f"/p2p/{r['ID']}"):  # a circuit address ends in the peer's id
            line += f"/p2p/{r['ID']}"
        if r.get("Connections"):
            c = r["Connections"][0]
            line += f"  ({c['Transport']}, {c['Security']}, {c['Direction']})"
        lines.append(line)
    return _emit(args, {"Peers": rows}, "\n".join(lines) if lines else "no peers connected")


def _cmd_connect(client: ControlClient, args) -> int:
    peer, addr = _split_p2p(args.address)
    client.connect(peer, [addr] if addr else [], int(args.timeout) or None)
    pid = b58encode(peer)
    return _emit(args, {"Connected": pid}, f"connect {pid} success")


def _cmd_disconnect(client: ControlClient, args) -> int:
    peer = _peer_bytes(args.peer)
    client.disconnect(peer)
    pid = b58encode(peer)
    return _emit(args, {"Disconnected": pid}, f"disconnect {pid} success")


def _cmd_ping(client: ControlClient, args) -> int:
    if args.count < 1 or args.count > 1000:
        raise P2PDError("--count must be between 1 and 1000")
    if args.peer.startswith("/"):
        peer, addr = _split_p2p(args.peer)
        client.connect(peer, [addr] if addr else [], int(args.timeout) or None)
    else:
        peer = _peer_bytes(args.peer)
    rtts = client.ping(peer, args.count)
    pid = b58encode(peer)
    ms = [round(r * 1000, 3) for r in rtts]
    text = "\n".join(
        [
            f"PING {pid}",
            *(f"Pong received: time={m:.2f} ms" for m in ms),
            f"Average latency: {sum(ms) / len(ms):.2f} ms",
        ]
    )
    return _emit(args, {"Peer": pid, "RTTsMillis": ms, "AverageMillis": sum(ms) / len(ms)}, text)


def _cmd_status(client: ControlClient, args) -> int:
    from .client import DaemonNotRunning

    started = time.perf_counter()
    try:
        peer, addrs = client.identify()
    except DaemonNotRunning as exc:
        if not args.json:
            raise
        # Scripts ask "is it running?": the answer is JSON too (and the exit status 1).
        print(json.dumps({"Running": False, "API": client.endpoint.multiaddr(),
                          "Error": str(exc)}), flush=True)
        return 1
    peers = client.list_peers()
    pid = b58encode(peer)
    data = {
        "Running": True,
        "API": client.endpoint.multiaddr(),
        "ID": pid,
        "Addresses": [_addr_text(a) for a in addrs],
        "Peers": len(peers),
        "ResponseMillis": round((time.perf_counter() - started) * 1000, 3),
    }
    from .client import RequestFailed

    try:
        data.update(client.status())
    except RequestFailed:  # a daemon without the STATUS extension (the go daemon)
        pass
    lines = [f"daemon running at {data['API']}", f"Peer ID: {pid}", f"Peers: {len(peers)}"]
    if "Reachability" in data:
        lines += [f"Reachability: {data['Reachability']}", f"DHT mode: {data['DHTMode']}"]
        lines += [f"External address: {a}" for a in data["External"]]
    limits = data.get("Limits")
    if isinstance(limits, dict):
        use, lim = limits.get("Use", {}), limits.get("Limits", {})
        refused = sum((limits.get("Refused") or {}).values())
        lines.append(f"Limits: {use.get('conns')}/{lim.get('max_conns')} connections, "
                     f"{use.get('streams')}/{lim.get('max_streams')} streams, "
                     f"{use.get('memory', 0) >> 20}/{lim.get('memory', 0) >> 20} MiB muxer "
                     f"memory, {use.get('pending_inbound', 0)}/"
                     f"{lim.get('max_pending_inbound', 0)} handshakes, {refused} refused")
    rt = data.get("Runtime")
    if isinstance(rt, dict):
        lines.append(f"Runtime: {rt.get('Tasks')} tasks, {rt.get('Fds')} fds, "
                     f"{rt.get('RSS', 0) >> 20} MiB RSS, {rt.get('Threads')} threads")
    lines += ["Addresses:", *(f"  {a}" for a in data["Addresses"])]
    text = "\n".join(lines)
    return _emit(args, data, text)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _cmd_stats_bw(client: ControlClient, args) -> int:
    """``p2pd stats bw``: kubo's fields (TotalIn, TotalOut, RateIn, RateOut), for all
    traffic, one protocol (``--proto``) or one peer (``--peer``)."""
    report = client.bandwidth()
    keys = ("TotalIn", "TotalOut", "RateIn", "RateOut")
    if args.proto and args.peer:
        raise P2PDError("give --proto or --peer, not both (counters are per protocol and "
                        "per peer, not per pair)")
    if args.proto:
        entry = report["Protocols"].get(args.proto, dict.fromkeys(keys, 0))
    elif args.peer:
        _peer_bytes(args.peer)  # a typo is said as such
        entry = report["Peers"].get(args.peer, dict.fromkeys(keys, 0))
    else:
        entry = report
    out = {k: entry[k] for k in keys}
    if args.json:
        if not (args.proto or args.peer):
            out.update(Protocols=report["Protocols"], Peers=report["Peers"],
                       Caps=report["Caps"])
        return _emit(args, out, "")
    what = args.proto or args.peer or "all traffic"
    lines = [f"Bandwidth ({what})",
             f"TotalIn:  {_size(out['TotalIn'])}", f"TotalOut: {_size(out['TotalOut'])}",
             f"RateIn:   {_size(out['RateIn'])}/s", f"RateOut:  {_size(out['RateOut'])}/s"]
    caps = report["Caps"]
    if not (args.proto or args.peer) and (caps["Upload"] or caps["Download"]):
        lines.append("Caps:     " + ", ".join(
            f"{name} {_size(caps[key])}/s" for name, key in (("up", "Upload"),
                                                            ("down", "Download"))
            if caps[key]))
    return _emit(args, out, "\n".join(lines))


_HANDLERS = {
    "id": _cmd_id,
    "peers": _cmd_peers,
    "connect": _cmd_connect,
    "disconnect": _cmd_disconnect,
    "ping": _cmd_ping,
    "status": _cmd_status,
    "stats": lambda client, args: _cmd_stats_bw(client, args),
}
