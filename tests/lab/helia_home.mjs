// A Helia 7 node for the network lab: listens on all addresses of its namespace and bootstraps
// from the multiaddrs in argv[2] (a JSON list, e.g. ["/dnsaddr/boot.lab/p2p/ID"]); /dnsaddr is
// resolved through the namespace's resolv.conf, i.e. the lab's DNS server. No mDNS, no
// delegated routing, no public bootstrap. JSON lines on stdin, one JSON line back each; the
// first line out is {"peerId"}.
//   {"cmd":"dial","addr":MA}                   -> {"ok":true}
//   {"cmd":"waitPeer","peer":ID,"timeout":MS}  -> {"ok":true}      (connected to ID)
//   {"cmd":"add","path":P}                     -> {"cid":CID}      (kubo's layout, CIDv1)
//   {"cmd":"cat","cid":CID,"out":P}            -> {"bytes":N,"ms":N}  (over Bitswap)
//   {"cmd":"peers"}                            -> {"peers":[ID...]}
import './polyfill.mjs'
import { createReadStream, createWriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { unixfs } from '@helia/unixfs'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { bootstrap } from '@libp2p/bootstrap'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'
import { multiaddr } from '@multiformats/multiaddr'

const list = JSON.parse(process.argv[2] ?? '[]')
const helia = withBitswap(withLibp2pLight(createHeliaLight({}), {
  addresses: { listen: ['/ip4/0.0.0.0/tcp/4001'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: list.length > 0 ? [bootstrap({ list, timeout: 50 })] : [],
  services: { identify: identify() },
  connectionManager: { inboundConnectionThreshold: 1000, maxConnections: 1000 }
}))
await helia.start()
const fs = unixfs(helia)
const node = helia.libp2p
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
say({ peerId: node.peerId.toString() })

async function * fileChunks (path) {
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) yield chunk
}

async function run (msg) {
  const signal = AbortSignal.timeout(msg.timeout ?? 120000)
  switch (msg.cmd) {
    case 'dial':
      await node.dial(multiaddr(msg.addr), { signal })
      return { ok: true }
    case 'waitPeer':
      while (!node.getPeers().some(p => p.toString() === msg.peer)) {
        if (signal.aborted) throw new Error(`not connected to ${msg.peer}`)
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      return { ok: true }
    case 'add': {
      const cid = await fs.addByteStream(fileChunks(msg.path), {
        cidVersion: 1,
        rawLeaves: true,
        chunker: fixedSize({ chunkSize: 262144 }),
        layout: balanced({ maxChildrenPerNode: 174 }),
        reduceSingleLeafToSelf: true,
        signal
      })
      return { cid: cid.toString() }
    }
    case 'cat': {
      const started = performance.now()
      const out = createWriteStream(msg.out)
      let bytes = 0
      for await (const chunk of fs.cat(CID.parse(msg.cid), { signal })) {
        bytes += chunk.byteLength
        if (!out.write(chunk)) await new Promise(resolve => out.once('drain', resolve))
      }
      await new Promise((resolve, reject) => out.end(err => err ? reject(err) : resolve()))
      return { bytes, ms: performance.now() - started }
    }
    case 'peers':
      return { peers: node.getPeers().map(p => p.toString()) }
    default:
      throw new Error(`unknown command ${msg.cmd}`)
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  try {
    say(await run(JSON.parse(line)))
  } catch (err) {
    say({ error: String(err?.message ?? err) })
  }
}
await helia.stop()
process.exit(0)
