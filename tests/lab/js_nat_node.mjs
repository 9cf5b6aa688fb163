// A js-libp2p 3.x node for the NAT lab: TCP on 0.0.0.0:4001, Noise, Yamux, identify, ping,
// AutoNAT (v1), circuit relay v2 (client always; server with RELAY_SERVER=1), DCUtR and an
// echo protocol. A Python test steers it with JSON lines on stdin, one JSON line back each.
// First line out: {"peerId", "addrs"} once it listens.
// argv[2]: JSON list of multiaddrs to dial at start (bootstrap / relays).
// Env: RELAY_SERVER=1 serves circuit relay v2; RESERVE=1 listens on /p2p-circuit (holds a
// reservation at a relay it is connected to); ANNOUNCE=ma,ma replaces the announced addresses.
//   {"cmd":"dial","addr":MA}            -> {"ok":true}
//   {"cmd":"ping","addr":MA}            -> {"rtt":ms}
//   {"cmd":"echo","addr":MA,"size":N}   -> {"sent","received","identical"}
//   {"cmd":"addrs"}                     -> {"addrs":[MA...]}  what it announces
//   {"cmd":"conns"}                     -> {"conns":[{peer,remoteAddr,direction,limited}]}
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, identifyPush } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { autoNAT } from '@libp2p/autonat'
import { dcutr } from '@libp2p/dcutr'
import { circuitRelayTransport, circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { multiaddr } from '@multiformats/multiaddr'
import { createHash, randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'

const ECHO = '/p2pd-test/echo/1.0.0'
const bytes = (chunk) => chunk instanceof Uint8Array ? chunk : chunk.subarray()
const boot = JSON.parse(process.argv[2] ?? '[]')

const listen = ['/ip4/0.0.0.0/tcp/4001']
if (process.env.RESERVE === '1') listen.push('/p2p-circuit')
const services = {
  identify: identify(),
  identifyPush: identifyPush(),
  ping: ping(),
  autoNAT: autoNAT(),
  dcutr: dcutr()
}
if (process.env.RELAY_SERVER === '1') {
  services.relay = circuitRelayServer({ reservations: { maxReservations: 128 } })
}
const node = await createLibp2p({
  addresses: {
    listen,
    ...(process.env.ANNOUNCE ? { announce: process.env.ANNOUNCE.split(',') } : {})
  },
  transports: [tcp(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services,
  // the lab's addresses are documentation ranges, which js counts as private: allow them
  connectionGater: { denyDialMultiaddr: () => false },
  connectionManager: { inboundConnectionThreshold: 1000 }
})

await node.handle(ECHO, async (stream) => {
  for await (const chunk of stream) {
    if (!stream.send(bytes(chunk))) await stream.onDrain()
  }
  await stream.close()
}, { runOnLimitedConnection: true })

for (const addr of boot) {
  try { await node.dial(multiaddr(addr)) } catch (err) { process.stderr.write(`boot ${addr}: ${err}\n`) }
}

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
say({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()) })

async function echo (addr, size) {
  const payload = randomBytes(size)
  const stream = await node.dialProtocol(multiaddr(addr), ECHO, { runOnLimitedConnection: true })
  const hash = createHash('sha256')
  let received = 0
  const reading = (async () => {
    for await (const chunk of stream) {
      const buf = bytes(chunk)
      hash.update(buf)
      received += buf.length
    }
  })()
  for (let i = 0; i < size; i += 65536) {
    if (!stream.send(payload.subarray(i, i + 65536))) await stream.onDrain()
  }
  await stream.close()
  await reading
  const identical = hash.digest('hex') === createHash('sha256').update(payload).digest('hex')
  return { sent: size, received, identical }
}

async function run (msg) {
  switch (msg.cmd) {
    case 'dial':
      await node.dial(multiaddr(msg.addr))
      return { ok: true }
    case 'ping':
      return { rtt: await node.services.ping.ping(multiaddr(msg.addr), { runOnLimitedConnection: true }) }
    case 'echo':
      return await echo(msg.addr, msg.size)
    case 'addrs':
      return { addrs: node.getMultiaddrs().map(a => a.toString()) }
    case 'conns':
      return {
        conns: node.getConnections().map(c => ({
          peer: c.remotePeer.toString(),
          remoteAddr: c.remoteAddr.toString(),
          direction: c.direction,
          limited: c.limits != null
        }))
      }
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
