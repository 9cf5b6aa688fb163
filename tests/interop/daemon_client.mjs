// Drives two p2pd daemons with the unmodified @libp2p/daemon-client (npm) and prints
// one JSON object with what each request returned. Usage:
//   node daemon_client.mjs SOCKET_PATH_A SOCKET_PATH_B   (Unix control sockets)
// Requests the client has no method for (DISCONNECT, CONNMANAGER, PEERSTORE, DHT,
// PUBSUB) go through its public `send()` with the protocol's own message types.
import './polyfill.mjs'
import { createClient } from '@libp2p/daemon-client'
import { Request, Response } from '@libp2p/daemon-protocol'
import { multiaddr } from '@multiformats/multiaddr'
import { createHash, randomBytes } from 'node:crypto'

const [addrA, addrB] = process.argv.slice(2)
// a /unix multiaddr holds the whole path as one URI-encoded component in JS
const unix = (path) => multiaddr('/unix/' + encodeURIComponent(path))
const a = createClient(unix(addrA))
const b = createClient(unix(addrB))
const out = {}
const ECHO = '/p2pd-js/echo/1.0.0'

async function raw (client, request) {
  const sh = await client.send(request)
  const response = await sh.read(Response)
  await sh.unwrap().close()
  return {
    ok: response.type === Response.Type.OK,
    error: response.error?.msg,
    peers: response.peers?.length,
    protos: response.peerStore?.protos,
    peerInfoAddrs: response.peerStore?.peer?.addrs?.map(x => multiaddr(x).toString())
  }
}

function bytes (chunk) {
  return chunk instanceof Uint8Array ? chunk : chunk.subarray()
}

const idA = await a.identify()
const idB = await b.identify()
out.identifyA = { peerId: idA.peerId.toString(), addrs: idA.addrs.map(x => x.toString()) }
out.identifyB = { peerId: idB.peerId.toString(), addrs: idB.addrs.map(x => x.toString()) }

await a.connect(idB.peerId, idB.addrs)
out.peersA = (await a.listPeers()).map(p => p.toString())

// B's client serves an echo handler; A's client opens a stream to it through both daemons.
await b.registerStreamHandler(ECHO, async (stream) => {
  for await (const chunk of stream) {
    if (!stream.send(bytes(chunk))) await stream.onDrain()
  }
  await stream.close()
})
const payload = randomBytes(4 * 1024 * 1024)
const conn = await a.openStream(idB.peerId, ECHO)
const hash = createHash('sha256')
let received = 0
const reading = (async () => {
  for await (const chunk of conn) {
    const buf = bytes(chunk)
    hash.update(buf)
    received += buf.length
    if (received >= payload.length) break
  }
})()
for (let i = 0; i < payload.length; i += 65536) {
  if (!conn.send(payload.subarray(i, i + 65536))) await conn.onDrain()
}
// The client's connection has no half-close (close() ends the whole socket), so read
// the full echo first, then close.
await reading
await conn.close()
out.echo = {
  sent: payload.length,
  received,
  identical: hash.digest('hex') === createHash('sha256').update(payload).digest('hex')
}

const peerB = idB.peerId.toMultihash().bytes
out.tag = await raw(a, { type: Request.Type.CONNMANAGER, connManager: { type: 'TAG_PEER', peer: peerB, tag: 'js', weight: 10n } })
out.untag = await raw(a, { type: Request.Type.CONNMANAGER, connManager: { type: 'UNTAG_PEER', peer: peerB, tag: 'js' } })
out.trim = await raw(a, { type: Request.Type.CONNMANAGER, connManager: { type: 'TRIM' } })
out.getProtocols = await raw(a, { type: Request.Type.PEERSTORE, peerStore: { type: 'GET_PROTOCOLS', id: peerB, protos: [] } })
out.getPeerInfo = await raw(a, { type: Request.Type.PEERSTORE, peerStore: { type: 'GET_PEER_INFO', id: peerB, protos: [] } })
out.dht = await raw(a, { type: Request.Type.DHT, dht: { type: 'FIND_PEER', peer: peerB } })
out.pubsub = await raw(a, { type: Request.Type.PUBSUB, pubsub: { type: 'GET_TOPICS' } })
out.disconnect = await raw(a, { type: Request.Type.DISCONNECT, disconnect: { peer: peerB } })
out.peersAfter = (await a.listPeers()).map(p => p.toString())

console.log(JSON.stringify(out))
process.exit(0)
