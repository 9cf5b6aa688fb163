"""NAT behaviours of a home router as nftables rulesets (one table, inside the router's namespace).

RFC 4787 terms. Linux conntrack NAT keeps a connection's source port when that port is free
and always answers only the exact remote address and port a mapping was made for, so:

* ``PORT_RESTRICTED``: ``masquerade`` -- endpoint-independent mapping (the same LAN address and
  port map to the same public port for every destination) and address-and-port-dependent
  filtering (only the remote address and port that were sent to get in).
* ``SYMMETRIC``: ``masquerade fully-random`` -- endpoint-dependent mapping: every new
  destination gets a new random public port.
* ``FULL_CONE``: masquerade (EIM) plus endpoint-independent filtering: each outgoing
  connection records its public port -> LAN address and port in a dynamic map, and any packet
  from anywhere to that public port is forwarded there (as long as the mapping lives).
* ``NONE``: a router for a public LAN: it routes, no translation, no filtering.
* ``UPNP``: ``PORT_RESTRICTED`` plus miniupnpd (Debian ``miniupnpd-nftables``) in the router,
  with its own table and chains, adding the port forwards the LAN asks for over UPnP IGD or
  NAT-PMP. It learns its public address from the lab's STUN server (stunserver.py).
"""

from __future__ import annotations

import enum

TABLE = "p2plab"
UPNP_TABLE = "p2plab_upnp"
MAPPING_TIMEOUT = "2m"


class Nat(enum.Enum):
    NONE = "none"
    FULL_CONE = "full-cone"
    PORT_RESTRICTED = "port-restricted"
    SYMMETRIC = "symmetric"
    UPNP = "upnp"


def ruleset(nat: Nat, lan_net: str, wan: str = "wan0", lan: str = "lan0") -> str:
    """The nft script (``nft -f -``) giving the router behaviour ``nat``."""
    if nat is Nat.NONE:
        return (
            f"table ip {TABLE} {{\n"
            "  chain forward { type filter hook forward priority 0; policy accept; }\n"
            "}\n"
        )
    lines = [f"table ip {TABLE} {{"]
    if nat is Nat.FULL_CONE:
        for proto in ("tcp", "udp"):
            lines.append(
                f"  map cone_{proto} {{ type inet_service : ipv4_addr . inet_service; "
                f"flags dynamic,timeout; timeout {MAPPING_TIMEOUT}; }}"
            )
    lines += [
        "  chain forward {",
        "    type filter hook forward priority 0; policy drop;",
        "    ct state established,related accept",
        f'    iifname "{lan}" oifname "{wan}" accept',
        f'    iifname "{wan}" ct status dnat accept',
        "  }",
        "  chain input {",  # like a home router: nothing on the WAN side is answered
        "    type filter hook input priority 0; policy accept;",
        "    ct state established,related accept",
        f'    iifname "{wan}" meta l4proto icmp accept',
        f'    iifname "{wan}" drop',
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    random = " fully-random" if nat is Nat.SYMMETRIC else ""
    lines.append(f'    oifname "{wan}" ip saddr {lan_net} masquerade{random}')
    lines.append("  }")
    if nat is Nat.FULL_CONE:
        # after srcnat: the reply tuple holds the public port the mapping got
        lines += ["  chain record {", "    type filter hook postrouting priority srcnat + 10;"]
        for proto in ("tcp", "udp"):
            lines.append(
                f'    oifname "{wan}" ct state new ct original ip saddr {lan_net} '
                f"meta l4proto {proto} update @cone_{proto} "
                "{ ct reply proto-dst : ct original ip saddr . ct original proto-src }"
            )
        lines += [
            "  }",
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
        ]
        for proto in ("tcp", "udp"):
            lines.append(
                f'    iifname "{wan}" meta l4proto {proto} '
                f"dnat ip to {proto} dport map @cone_{proto}"
            )
        lines.append("  }")
    lines.append("}")
    if nat is Nat.UPNP:  # the chains miniupnpd fills (as its nft_init.sh makes them)
        lines += [
            f"table inet {UPNP_TABLE} {{",
            "  chain miniupnpd { }",
            "  chain prerouting_miniupnpd { }",
            "  chain postrouting_miniupnpd { }",
            "  chain forward { type filter hook forward priority -1; policy accept;",
            "    jump miniupnpd; }",
            "  chain prerouting { type nat hook prerouting priority dstnat - 1; policy accept;",
            "    jump prerouting_miniupnpd; }",
            "  chain postrouting { type nat hook postrouting priority srcnat - 1; policy accept;",
            "    jump postrouting_miniupnpd; }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def miniupnpd_conf(wan: str, stun: str, lan: str, lan_net: str, uuid: str,
                   upnp_igd: bool = True) -> str:
    """miniupnpd.conf for a router with WAN interface ``wan`` and LAN interface ``lan``;
    ``upnp_igd=False`` makes a router that offers NAT-PMP/PCP only.

    miniupnpd refuses a public address in the documentation ranges, both on the interface
    and as ``ext_ip``, but takes the one a STUN server (``stun``: host:port) reports."""
    return "\n".join(
        [
            f"ext_ifname={wan}",
            "ext_perform_stun=yes",
            f"ext_stun_host={stun.rsplit(':', 1)[0]}",
            f"ext_stun_port={stun.rsplit(':', 1)[1]}",
            f"listening_ip={lan}",
            "http_port=0",
            "enable_natpmp=yes",
            f"enable_upnp={'yes' if upnp_igd else 'no'}",
            "secure_mode=yes",
            "system_uptime=yes",
            "notify_interval=60",
            f"uuid={uuid}",
            f"upnp_table_name={UPNP_TABLE}",
            f"upnp_nat_table_name={UPNP_TABLE}",
            "upnp_forward_chain=miniupnpd",
            "upnp_nat_chain=prerouting_miniupnpd",
            "upnp_nat_postrouting_chain=postrouting_miniupnpd",
            f"allow 1024-65535 {lan_net} 1024-65535",
            "deny 0-65535 0.0.0.0/0 0-65535",
            "",
        ]
    )
