// Drives two p2pd daemons started with -pubsub through the unmodified @libp2p/daemon-client:
// subscribe on B, getSubscribers / publish on A, getTopics on B; prints one JSON object.
// Usage: node daemon_client_pubsub.mjs SOCKET_PATH_A SOCKET_PATH_B
import './polyfill.mjs'
import { createClient } from '@libp2p/daemon-client'
import { multiaddr } from '@multiformats/multiaddr'

const [addrA, addrB] = process.argv.slice(2)
const unix = (path) => multiaddr('/unix/' + encodeURIComponent(path))
const a = createClient(unix(addrA))
const b = createClient(unix(addrB))
const out = {}
const TOPIC = 'js-topic'

const idB = await b.identify()
await a.connect(idB.peerId, idB.addrs)
const sub = await b.pubsub.subscribe(TOPIC)
const deadline = Date.now() + 15000
let subscribers = []
while (Date.now() < deadline) {
  subscribers = (await a.pubsub.getSubscribers(TOPIC)).map(p => p.toString())
  if (subscribers.includes(idB.peerId.toString())) break
  await new Promise(resolve => setTimeout(resolve, 200))
}
out.subscribers = subscribers
out.topicsB = await b.pubsub.getTopics()
await new Promise(resolve => setTimeout(resolve, 1500)) // a heartbeat: the mesh forms
const sent = ['one', 'two', 'three']
for (const text of sent) {
  await a.pubsub.publish(TOPIC, new TextEncoder().encode(text))
}
const got = []
for await (const msg of sub.messages()) {
  got.push({ data: new TextDecoder().decode(msg.data), topics: msg.topics ?? msg.topicIDs, hasSig: (msg.signature?.length ?? 0) === 64 })
  if (got.length === sent.length) break
}
out.received = got
await sub.cancel()
process.stdout.write(JSON.stringify(out) + '\n')
process.exit(0)
