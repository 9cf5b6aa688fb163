// The unmodified @libp2p/daemon-client drives the DHT of two p2pd daemons (-dht) that
// share a network; prints one JSON object. Usage: node daemon_client_dht.mjs SOCK_A SOCK_B
import './polyfill.mjs'
import { createClient } from '@libp2p/daemon-client'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

const [sockA, sockB] = process.argv.slice(2)
const unix = (path) => multiaddr('/unix/' + encodeURIComponent(path))
const a = createClient(unix(sockA))
const b = createClient(unix(sockB))
const out = {}
const idA = await a.identify()

const cid = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('via daemon-client')))
await a.dht.provide(cid)
out.providers = []
for await (const p of b.dht.findProviders(cid, 1)) out.providers.push(p.id.toString())
out.peerA = idA.peerId.toString()
const found = await b.dht.findPeer(idA.peerId)
out.findPeer = { id: found.id.toString(), addrs: found.multiaddrs.map(m => m.toString()) }
out.closest = []
for await (const p of b.dht.getClosestPeers(new TextEncoder().encode('some key'))) out.closest.push(p.id.toString())
const [key, value] = [Buffer.from(process.env.PK_KEY, 'hex'), Buffer.from(process.env.PK_VALUE, 'hex')]
await a.dht.put(new Uint8Array(key), new Uint8Array(value))
out.got = Buffer.from(await b.dht.get(new Uint8Array(key))).toString('hex')
process.stdout.write(JSON.stringify(out) + '\n')
process.exit(0)
