// A js-libp2p 3.x node running @libp2p/kad-dht in server mode on /ipfs/kad/1.0.0, steered by
// JSON lines on stdin (one JSON line back per command). First line out: {"peerId","addrs"}.
//   {"cmd":"dial","addr":MA}              -> {"ok":true}
//   {"cmd":"provide","cid":CID}           -> {"ok":true}
//   {"cmd":"findProviders","cid":CID}     -> {"providers":[ID...]}
//   {"cmd":"findPeer","peerId":ID}        -> {"addrs":[MA...]}  ("useCache":false: a lookup
//                                            even when the peer store has addresses)
//   {"cmd":"peers"}                       -> {"peers":[ID...]} (connected peers)
//   {"cmd":"hangUp","peerId":ID}          -> {"ok":true} (closes the connections to it)
//   {"cmd":"knows","peerId":ID}           -> {"knows":bool} (the peer store has addresses)
//   {"cmd":"put","key":HEX,"value":HEX}   -> {"ok":true}
//   {"cmd":"get","key":HEX}               -> {"value":HEX}
//   {"cmd":"table"}                       -> {"peers":[ID...]} (routing table contents)
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { createInterface } from 'node:readline'

const node = await createLibp2p({
  // LISTEN: the network lab runs it on 0.0.0.0:4001 inside a namespace
  addresses: { listen: [process.env.LISTEN ?? '/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper })
  },
  connectionManager: { inboundConnectionThreshold: 1000, maxConnections: 1000 }
})

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const hex = (u8) => Buffer.from(u8).toString('hex')
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'))
say({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()) })

async function run (msg) {
  const signal = AbortSignal.timeout(msg.timeout ?? 30000)
  switch (msg.cmd) {
    case 'dial':
      await node.dial(multiaddr(msg.addr), { signal })
      return { ok: true }
    case 'provide':
      await node.contentRouting.provide(CID.parse(msg.cid), { signal })
      return { ok: true }
    case 'findProviders': {
      const out = []
      for await (const p of node.contentRouting.findProviders(CID.parse(msg.cid), { signal })) {
        out.push(p.id.toString())
        break
      }
      return { providers: out }
    }
    case 'findPeer': {
      const info = await node.peerRouting.findPeer(peerIdFromString(msg.peerId),
        { signal, useCache: msg.useCache ?? true })
      return { addrs: info.multiaddrs.map(a => a.toString()) }
    }
    case 'put':
      await node.contentRouting.put(unhex(msg.key), unhex(msg.value), { signal })
      return { ok: true }
    case 'get':
      return { value: hex(await node.contentRouting.get(unhex(msg.key), { signal })) }
    case 'peers':
      return { peers: [...new Set(node.getConnections().map(c => c.remotePeer.toString()))] }
    case 'hangUp':
      await node.hangUp(peerIdFromString(msg.peerId), { signal })
      return { ok: true }
    case 'knows': {
      const id = peerIdFromString(msg.peerId)
      if (!(await node.peerStore.has(id))) return { knows: false }
      return { knows: (await node.peerStore.get(id)).addresses.length > 0 }
    }
    case 'table':
      return { peers: Array.from(node.services.dht.routingTable.kb.toIterable()).map(c => c.peerId.toString()) }
    default:
      throw new Error(`unknown command ${msg.cmd}`)
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  try {
    say(await run(JSON.parse(line)))
  } catch (err) {
    say({ error: String(err?.stack ?? err) })
  }
}
await node.stop()
process.exit(0)
