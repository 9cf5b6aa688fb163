// A js-libp2p 3.x node with @libp2p/gossipsub 17 (or @libp2p/floodsub with argv[2] ==
// 'floodsub') on 127.0.0.1, steered by JSON lines on stdin (one JSON line back per command).
// First line out: {"peerId","addrs"}.
//   {"cmd":"dial","addr":MA}                 -> {"ok":true}
//   {"cmd":"subscribe","topic":T}            -> {"ok":true}
//   {"cmd":"publish","topic":T,"data":HEX}   -> {"ok":true}
//   {"cmd":"received"}                       -> {"messages":[{"from","seqno","data","topic"}...]}
//   {"cmd":"publishMany","topic":T,"n":N,"size":S,"gapMs":G} -> {"ok":true}: N messages
//        stamped with their publish time; {"cmd":"stamps"} -> {"stamps":[[sent ms, got ms]...]}
//   {"cmd":"peers","topic":T}                -> {"peers":[ID...]} (pubsub peers subscribed to T)
//   {"cmd":"raw","peerId":ID,"proto":P,"hex":HEX} -> {"ok":true}: write raw bytes on a new
//        stream (for sending forged RPCs)
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { floodsub } from '@libp2p/floodsub'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { createInterface } from 'node:readline'

const useFloodsub = process.argv[2] === 'floodsub'
const pubsub = useFloodsub
  ? floodsub()
  : gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, heartbeatInterval: 1000 })
const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), pubsub },
  connectionManager: { inboundConnectionThreshold: 1000, maxConnections: 1000 }
})

const received = []
node.services.pubsub.addEventListener('message', (evt) => {
  const m = evt.detail
  received.push({
    from: m.from?.toString() ?? '',
    seqno: m.sequenceNumber != null ? m.sequenceNumber.toString(16) : '',
    data: Buffer.from(m.data).toString('hex'),
    topic: m.topic,
    at: performance.timeOrigin + performance.now()
  })
})

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
say({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()) })

async function run (msg) {
  const signal = AbortSignal.timeout(msg.timeout ?? 30000)
  switch (msg.cmd) {
    case 'dial':
      await node.dial(multiaddr(msg.addr), { signal })
      return { ok: true }
    case 'subscribe':
      node.services.pubsub.subscribe(msg.topic)
      return { ok: true }
    case 'publish':
      await node.services.pubsub.publish(msg.topic, new Uint8Array(Buffer.from(msg.data, 'hex')))
      return { ok: true }
    case 'received':
      return { messages: received }
    case 'stamps':
      // receive times (ms since the epoch) against the publish time stamped into the data
      return { stamps: received.map(m => [Buffer.from(m.data, 'hex').readDoubleBE(0), m.at]) }
    case 'publishMany': {
      // n messages of `size` bytes, each starting with its publish time (float64 ms)
      for (let i = 0; i < msg.n; i++) {
        const data = Buffer.alloc(msg.size)
        data.writeDoubleBE(performance.timeOrigin + performance.now(), 0)
        data.writeUInt32BE(i, 8)
        await node.services.pubsub.publish(msg.topic, new Uint8Array(data))
        if (msg.gapMs) await new Promise(resolve => setTimeout(resolve, msg.gapMs))
      }
      return { ok: true }
    }
    case 'peers':
      return { peers: node.services.pubsub.getSubscribers(msg.topic).map(p => p.toString()) }
    case 'raw': {
      const stream = await node.dialProtocol(peerIdFromString(msg.peerId), msg.proto, { signal })
      stream.send(new Uint8Array(Buffer.from(msg.hex, 'hex')))
      await new Promise(resolve => setTimeout(resolve, 300))
      await stream.close()
      return { ok: true }
    }
    default:
      throw new Error(`unknown command ${msg.cmd}`)
  }
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  try {
    say(await run(JSON.parse(line)))
  } catch (err) {
    say({ error: String(err?.message ?? err) })
  }
}
await node.stop()
process.exit(0)
