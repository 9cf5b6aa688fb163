// A Helia-based HTTP gateway for bench/gateway.py: @helia/verified-fetch over a Helia node
// with no network at all (createHeliaLight: in-memory blockstore, no libp2p, no routers).
// argv: FILE. It imports FILE with kubo's layout (256 KiB raw leaves, 174 links, CIDv1, as
// `p2pd add --cid-version=1`), listens on 127.0.0.1:0 and prints one JSON line
// {"cid","port"}; then GET /ipfs/CID[/path] is answered by verifiedFetch('ipfs://...'),
// status, headers and body streamed as they come.
import './polyfill.mjs'
import { createReadStream } from 'node:fs'
import { createServer } from 'node:http'
import { Readable } from 'node:stream'
import { createHeliaLight } from 'helia'
import { unixfs } from '@helia/unixfs'
import { createVerifiedFetch } from '@helia/verified-fetch'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

// Every block is local: the one block broker (Helia wants one) never finds anything else.
const offline = () => ({
  name: 'offline',
  retrieve: async (cid) => { throw new Error(`block ${cid} is not local (offline gateway)`) },
  createSession: () => offline()
})
const helia = createHeliaLight({ blockBrokers: [offline] })
await helia.start()
const fs = unixfs(helia)
async function * chunks (path) {
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) yield chunk
}
const cid = await fs.addByteStream(chunks(process.argv[2]), {
  cidVersion: 1,
  rawLeaves: true,
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 }),
  reduceSingleLeafToSelf: true
})
const verifiedFetch = await createVerifiedFetch(helia)

const server = createServer(async (req, res) => {
  try {
    if (!req.url.startsWith('/ipfs/')) {
      res.writeHead(404).end()
      return
    }
    const headers = {}
    if (req.headers.range) headers.range = req.headers.range
    if (req.headers.accept) headers.accept = req.headers.accept
    const resp = await verifiedFetch('ipfs://' + req.url.slice('/ipfs/'.length), { headers })
    res.writeHead(resp.status, Object.fromEntries(resp.headers))
    if (resp.body == null || req.method === 'HEAD') {
      res.end()
      return
    }
    Readable.fromWeb(resp.body).pipe(res)
  } catch (err) {
    res.writeHead(500).end(String(err))
  }
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ cid: cid.toString(), port: server.address().port }) + '\n')
})
