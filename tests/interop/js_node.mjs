// A js-libp2p 3.x node (TCP + WebSockets, Noise, Yamux, identify, ping, an echo protocol)
// that a Python test steers with JSON lines on stdin; each command gets one JSON line on
// stdout. First line out: {"peerId", "addrs"} once it listens on 127.0.0.1.
//   {"cmd":"dial","addr":MA}                   -> {"ok":true}
//   {"cmd":"ping","addr":MA}                   -> {"rtt":ms}
//   {"cmd":"echo","addr":MA,"size":N}          -> {"sent":N,"received":M,"identical":bool}
//   {"cmd":"peer","peerId":ID}                 -> {"protocols","agent","addrs"} from identify
//   {"cmd":"hangup","peerId":ID}               -> {"ok":true}
//   {"cmd":"connections"}                      -> {"peers":[ID...]}
//   {"cmd":"conninfo"}                         -> {"conns":[{peer,encryption,multiplexer,direction}]}
// Env: SECURITY=noise (default) | tls | tls,noise (order of preference); KEY_TYPE=Ed25519
// (default) | RSA | secp256k1 | ECDSA for the node's key; MUXERS=mplex for an mplex-only peer.
import './polyfill.mjs'
import { WebSocket as WsWebSocket } from 'ws'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { tls } from '@libp2p/tls'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { yamux } from '@chainsafe/libp2p-yamux'
import { mplex } from '@libp2p/mplex'
import { identify, identifyPush } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { createHash, randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'

// @libp2p/websockets dials with the global WebSocket, which Node has only from 22 on. It
// awaits 'open' and only then adds its 'message' listener. A WHATWG WebSocket (browsers,
// Node 22) delivers each message as a task of its own, after that continuation has run; the
// `ws` package emits a message that arrived in the same TCP segment as the HTTP upgrade
// answer synchronously, before the listener exists, and it is lost. A listener that sends
// first (multistream-select's header, as py-libp2p's does) then looked like a broken peer:
// js read "/noise" where "/multistream/1.0.0" was expected. Until a 'message' listener is
// added, this wrapper keeps messages and hands them to it, as a WHATWG WebSocket would.
class QueueingWebSocket extends WsWebSocket {
  constructor (...args) {
    super(...args)
    this._early = []
    this._keep = (evt) => { this._early.push(evt) }
    super.addEventListener('message', this._keep)
  }

  addEventListener (type, listener, options) {
    super.addEventListener(type, listener, options)
    if (type === 'message' && this._early != null) {
      super.removeEventListener('message', this._keep)
      const early = this._early
      this._early = null
      for (const evt of early) {
        if (typeof listener === 'function') listener.call(this, evt)
        else listener.handleEvent(evt)
      }
    }
  }
}
if (typeof globalThis.WebSocket !== 'function') globalThis.WebSocket = QueueingWebSocket

const ECHO = process.env.ECHO_PROTOCOL ?? '/p2pd-test/echo/1.0.0'
const bytes = (chunk) => chunk instanceof Uint8Array ? chunk : chunk.subarray()

const encrypters = { noise, tls }
const security = (process.env.SECURITY ?? 'noise').split(',').map(name => encrypters[name]())

const node = await createLibp2p({
  privateKey: await generateKeyPair(process.env.KEY_TYPE ?? 'Ed25519'),
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'] },
  transports: [tcp(), webSockets()],
  connectionEncrypters: security,
  // js-yamux credits the sender as soon as bytes reach a stream's read buffer and aborts the
  // stream when that buffer passes maxReadBufferLength (4 MiB by default). This node sends
  // and reads 16 MiB in one event loop, so a fast peer can fill the buffer while the loop
  // is busy sending: give the buffer room for the whole test payload.
  // MUXERS=mplex makes an mplex-only peer (the fallback older peers still speak).
  streamMuxers: process.env.MUXERS === 'mplex'
    ? [mplex()]
    : [yamux({ streamOptions: { maxReadBufferLength: 64 * 1024 * 1024 } })],
  services: { identify: identify(), identifyPush: identifyPush(), ping: ping() },
  connectionManager: { inboundConnectionThreshold: 1000 }
})

await node.handle(ECHO, async (stream) => {
  for await (const chunk of stream) {
    if (!stream.send(bytes(chunk))) await stream.onDrain()
  }
  await stream.close()
}, { maxInboundStreams: 64, maxOutboundStreams: 64 })

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
say({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()) })

async function echo (addr, size) {
  const payload = randomBytes(size)
  const stream = await node.dialProtocol(multiaddr(addr), ECHO)
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
      return { rtt: await node.services.ping.ping(multiaddr(msg.addr)) }
    case 'echo':
      return await echo(msg.addr, msg.size)
    case 'peer': {
      const peer = await node.peerStore.get(peerIdFromString(msg.peerId))
      const agent = peer.metadata.get('AgentVersion')
      return {
        protocols: peer.protocols,
        agent: agent == null ? null : new TextDecoder().decode(agent),
        addrs: peer.addresses.map(a => a.multiaddr.toString())
      }
    }
    case 'hangup':
      await node.hangUp(peerIdFromString(msg.peerId))
      return { ok: true }
    case 'connections':
      return { peers: node.getConnections().map(c => c.remotePeer.toString()) }
    case 'conninfo':
      return {
        conns: node.getConnections().map(c => ({
          peer: c.remotePeer.toString(),
          encryption: c.encryption,
          multiplexer: c.multiplexer,
          direction: c.direction
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
    say({ error: String(err?.stack ?? err) + (err?.cause != null ? '\ncaused by: ' + String(err.cause?.stack ?? err.cause) : '') })
  }
}
await node.stop()
process.exit(0)
