// A Helia 7 node (@helia/bitswap + @helia/unixfs) on 127.0.0.1 only, steered by JSON lines on
// stdin (one JSON line back per command). First line out: {"peerId","addrs"}.
// Nothing reaches the internet: libp2p is built by hand (TCP, noise, yamux, identify), no
// delegated routers, no gateways, no bootstrap, no mDNS.
//   {"cmd":"dial","addr":MA}                  -> {"ok":true}
//   {"cmd":"add","path":P,"cidVersion":1,"rawLeaves":true}   -> {"cid":CID,"ms":N}
//        kubo's layout (256 KiB chunks, 174 links), so CIDs match `p2pd add`
//   {"cmd":"addBytes","path":P}               -> {"cid":CID,"ms":N}  (Helia's own defaults,
//        the file read into memory first; `ms` times addBytes only)
//   {"cmd":"cat","cid":CID,"out":P}           -> {"bytes":N,"ms":N}  (fetch over Bitswap)
//   {"cmd":"has","cid":CID}                   -> {"has":bool}
//   {"cmd":"peers"}                           -> {"peers":[ID...]}
import './polyfill.mjs'
import { createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { unixfs } from '@helia/unixfs'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'
import { createReadStream } from 'node:fs'

const helia = withBitswap(withLibp2pLight(createHeliaLight({}), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() },
  connectionManager: { inboundConnectionThreshold: 1000, maxConnections: 1000 }
}))
await helia.start()
const fs = unixfs(helia)
const node = helia.libp2p

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
say({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()) })

async function * fileChunks (path) {
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    yield chunk
  }
}

async function run (msg) {
  const signal = AbortSignal.timeout(msg.timeout ?? 600000)
  switch (msg.cmd) {
    case 'dial':
      await node.dial(multiaddr(msg.addr), { signal })
      return { ok: true }
    case 'add': {
      const started = performance.now()
      const cid = await fs.addByteStream(fileChunks(msg.path), {
        cidVersion: msg.cidVersion ?? 1,
        rawLeaves: msg.rawLeaves ?? true,
        chunker: fixedSize({ chunkSize: 262144 }),
        layout: balanced({ maxChildrenPerNode: 174 }),
        reduceSingleLeafToSelf: true,
        signal
      })
      return { cid: cid.toString(), ms: performance.now() - started }
    }
    case 'addBytes': {
      const data = await readFile(msg.path)
      const started = performance.now()
      const cid = await fs.addBytes(data, {
        cidVersion: 1,
        rawLeaves: true,
        chunker: fixedSize({ chunkSize: 262144 }),
        layout: balanced({ maxChildrenPerNode: 174 }),
        signal
      })
      return { cid: cid.toString(), ms: performance.now() - started }
    }
    case 'cat': {
      const started = performance.now()
      const out = createWriteStream(msg.out)
      let bytes = 0
      for await (const chunk of fs.cat(CID.parse(msg.cid), { signal })) {
        bytes += chunk.byteLength
        if (!out.write(chunk)) {
          await new Promise(resolve => out.once('drain', resolve))
        }
      }
      await new Promise((resolve, reject) => out.end(err => err ? reject(err) : resolve()))
      return { bytes, ms: performance.now() - started }
    }
    case 'has':
      return { has: await helia.blockstore.has(CID.parse(msg.cid)) }
    case 'peers':
      return { peers: node.getPeers().map(p => p.toString()) }
    default:
      throw new Error(`unknown command ${msg.cmd}`)
  }
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let msg
  try {
    msg = JSON.parse(line)
    say(await run(msg))
  } catch (err) {
    say({ error: String(err?.message ?? err) })
  }
}
await helia.stop()
process.exit(0)
