// js-libp2p 3.x peers for the daemon benchmarks (bench/stream.py, connect.py, idle.py).
// TCP + Noise (or TLS 1.3 with SECURITY=tls in the environment) + Yamux on 127.0.0.1. The libp2p perf protocol /perf/1.0.0 (libp2p/specs
// perf/perf.md) is implemented here from the spec: @libp2p/perf is not in the registry
// this project installs from.
//   node perf.mjs server                  -> {"peerId","addrs"}; serves /perf/1.0.0 until killed
//   node perf.mjs client ADDR UP DOWN     -> {"upload_s","download_s"} (one perf run)
//   node perf.mjs connect ADDR N          -> {"connections":N,"seconds":s} (time spent establishing
//                                            N new connections in turn; closes not counted)
//   node perf.mjs hold ADDR N             -> N nodes each connected to ADDR: {"connected":n};
//                                            holds until stdin closes
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { tls } from '@libp2p/tls'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddr } from '@multiformats/multiaddr'

const PERF = '/perf/1.0.0'
const ENCRYPTERS = { noise, tls }
const SECURITY = process.env.SECURITY || 'noise'
if (!ENCRYPTERS[SECURITY]) throw new Error(`SECURITY is noise or tls, not ${SECURITY}`)
const CHUNK = 64 * 1024
const ZEROS = new Uint8Array(CHUNK)
const bytes = (chunk) => chunk instanceof Uint8Array ? chunk : chunk.subarray()
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

async function newNode (listen) {
  return await createLibp2p({
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [ENCRYPTERS[SECURITY]()],
    streamMuxers: [yamux()],
    connectionManager: { inboundConnectionThreshold: 100000, maxConnections: 100000 }
  })
}

async function sendZeros (stream, n) {
  while (n > 0) {
    const k = Math.min(n, CHUNK)
    if (!stream.send(k === CHUNK ? ZEROS : ZEROS.subarray(0, k))) await stream.onDrain()
    n -= k
  }
}

async function server () {
  const node = await newNode(true)
  await node.handle(PERF, async (stream) => {
    let head = new Uint8Array(0)
    let want = -1
    for await (const chunk of stream) {
      const buf = bytes(chunk)
      if (want < 0) {
        const joined = new Uint8Array(head.length + buf.length)
        joined.set(head)
        joined.set(buf, head.length)
        head = joined
        if (head.length >= 8) want = Number(new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0))
      }
    }
    await sendZeros(stream, want)
    await stream.close()
  }, { maxInboundStreams: 256 })
  say({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()) })
}

async function client (addr, up, down) {
  const node = await newNode(false)
  const conn = await node.dial(multiaddr(addr))
  const stream = await conn.newStream(PERF)
  const start = performance.now()
  const head = new Uint8Array(8)
  new DataView(head.buffer).setBigUint64(0, BigInt(down))
  stream.send(head)
  await sendZeros(stream, up)
  let got = 0
  let uploaded = 0
  const reading = (async () => {
    for await (const chunk of stream) {
      if (!uploaded) uploaded = performance.now()
      got += bytes(chunk).length
    }
  })()
  await stream.close()
  const closedAt = performance.now()
  await reading
  const done = performance.now()
  if (got !== down) throw new Error(`received ${got} of ${down}`)
  const upEnd = down ? Math.min(uploaded || closedAt, closedAt) : done
  say({ upload_s: (upEnd - start) / 1000, download_s: (done - upEnd) / 1000 })
  await node.stop()
}

async function connect (addr, n) {
  const node = await newNode(false)
  const ma = multiaddr(addr)
  let ms = 0
  for (let i = 0; i < n; i++) {
    const start = performance.now()
    const conn = await node.dial(ma, { force: true })
    ms += performance.now() - start // establishing, not closing
    await conn.close()
  }
  say({ connections: n, seconds: ms / 1000 })
  await node.stop()
}

async function hold (addr, n) {
  const nodes = []
  let connected = 0
  for (let i = 0; i < n; i++) {
    const node = await newNode(false)
    nodes.push(node)
    try {
      await node.dial(multiaddr(addr))
      connected++
    } catch {}
  }
  say({ connected })
  process.stdin.resume()
  await new Promise((resolve) => process.stdin.on('end', resolve))
  await Promise.all(nodes.map(n => n.stop()))
}

const [mode, ...args] = process.argv.slice(2)
if (mode === 'server') await server()
else if (mode === 'client') await client(args[0], Number(args[1]), Number(args[2]))
else if (mode === 'connect') await connect(args[0], Number(args[1]))
else if (mode === 'hold') await hold(args[0], Number(args[1]))
else { console.error('modes: server | client ADDR UP DOWN | connect ADDR N | hold ADDR N'); process.exit(2) }
if (mode !== 'server' && mode !== 'hold') process.exit(0)
