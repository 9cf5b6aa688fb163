// The official libp2p daemon interop suite (@libp2p/interop) with OUR daemon in the role the
// suite calls "go" (it starts a go-libp2p-daemon with the go flags; ours takes the same
// flags) and js-libp2p 3.x behind @libp2p/daemon-server as "js", as the js-libp2p
// repository's own interop runner does. Mocha runs the suites named in SUITES
// (comma-separated: connect, streams, relay, dht, pubsub); exit code = failures.
// Env: P2PD_PYTHON (the interpreter with p2pd installed), SUITES, GREP (a mocha grep;
// default: everything but the plaintext cases), REPORTER (mocha's, default spec).
import './polyfill.mjs'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Mocha from 'mocha'
import {
  UnsupportedError, connectInteropTests, dhtInteropTests, pubsubInteropTests,
  relayInteropTests, streamInteropTests
} from '@libp2p/interop'
import { createClient } from '@libp2p/daemon-client'
import { createServer } from '@libp2p/daemon-server'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { tls } from '@libp2p/tls'
import { yamux } from '@chainsafe/libp2p-yamux'
import { mplex } from '@libp2p/mplex'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { gossipsub } from '@libp2p/gossipsub'
import { floodsub } from '@libp2p/floodsub'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'

const PYTHON = process.env.P2PD_PYTHON ?? 'python3'
// our daemons still running: a failed spawn or hook never calls stop(), so at exit
const running = new Set()
process.on('exit', () => { for (const proc of running) proc.kill('SIGKILL') })
// js multiaddr wants the socket path as one URI-encoded component
const unixAddr = (path) => multiaddr(`/unix/${encodeURIComponent(path)}`)

async function waitFor (path, proc, log) {
  const deadline = Date.now() + 30000
  while (!existsSync(path)) {
    if (proc.exitCode != null) throw new Error(`our daemon exited ${proc.exitCode}: ${log.join('')}`)
    if (Date.now() > deadline) throw new Error(`our daemon did not start: ${log.join('')}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

// "go": our daemon, with the flags the js-libp2p interop runner gives the go daemon
async function spawnOurs (options) {
  if (options.encryption === 'plaintext') throw new UnsupportedError('we refuse plaintext')
  if (options.transport != null && options.transport !== 'tcp') {
    throw new UnsupportedError(`no ${options.transport} transport`)
  }
  const dir = mkdtempSync(join(tmpdir(), 'p2pi-'))
  const sock = join(dir, 'd.sock')
  const args = ['-m', 'p2pd', `-listen=/unix${sock}`]
  args.push(options.noListen === true ? '-noListenAddrs' : '-hostAddrs=/ip4/127.0.0.1/tcp/0')
  if (options.encryption === 'noise') args.push('-noise=true', '-tls=false')
  if (options.encryption === 'tls') args.push('-tls=true', '-noise=false')
  if (options.dht === true) args.push('-dhtServer')
  if (options.pubsub === true) args.push('-pubsub')
  if (options.pubsubRouter != null) args.push(`-pubsubRouter=${options.pubsubRouter}`)
  if (options.key != null) args.push(`-id=${options.key}`)
  args.push(`-muxer=${options.muxer === 'mplex' ? 'mplex' : 'yamux'}`)
  if (options.relay === true) args.push('-relay')
  const log = []
  const proc = spawn(PYTHON, args, { env: { ...process.env, P2PD_HOME: join(dir, 'home') } })
  running.add(proc)
  proc.once('exit', () => running.delete(proc))
  proc.stdout.on('data', d => log.push(d.toString()))
  proc.stderr.on('data', d => log.push(d.toString()))
  await waitFor(sock, proc, log)
  const client = createClient(unixAddr(sock))
  return {
    client,
    async stop () {
      if (proc.exitCode == null) {
        const gone = new Promise(resolve => proc.once('exit', resolve))
        proc.kill('SIGTERM')
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5000)
        await gone
        clearTimeout(timer)
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

// "js": js-libp2p behind the daemon protocol, as js-libp2p's interop runner builds it
async function spawnJs (options) {
  if (options.encryption === 'plaintext') throw new UnsupportedError('not built here')
  if (options.transport != null && options.transport !== 'tcp') {
    throw new UnsupportedError(`no ${options.transport} transport`)
  }
  const dir = mkdtempSync(join(tmpdir(), 'p2pj-'))
  const addr = unixAddr(join(dir, 'd.sock'))
  const services = { identify: identify(), ping: ping() }
  if (options.relay === true) {
    services.relay = circuitRelayServer({ reservations: { maxReservations: Infinity } })
  }
  if (options.dht === true) {
    services.dht = kadDHT({
      protocol: '/ipfs/kad/1.0.0', peerInfoMapper: passthroughMapper, clientMode: false
    })
  }
  if (options.pubsub === true) {
    services.pubsub = options.pubsubRouter === 'floodsub' ? floodsub() : gossipsub()
  }
  const node = await createLibp2p({
    ...(options.key != null
      ? { privateKey: privateKeyFromProtobuf(readFileSync(options.key)) }
      : {}),
    addresses: { listen: options.noListen === true ? [] : ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [options.encryption === 'tls' ? tls() : noise()],
    streamMuxers: [options.muxer === 'mplex' ? mplex() : yamux()],
    services,
    connectionGater: { denyDialMultiaddr: () => false }
  })
  const server = createServer(addr, node)
  await server.start()
  const client = createClient(addr)
  return {
    client,
    async stop () {
      await server.stop()
      await node.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

const factory = {
  async spawn (options) {
    return options.type === 'go' ? spawnOurs(options) : spawnJs(options)
  }
}

// The echo suite's plaintext cases cannot be skipped from the factory (its hook does not
// catch UnsupportedError as the connect suite's does) and p2pd never speaks plaintext:
// they are left out by name unless GREP says otherwise.
const mocha = new Mocha({
  timeout: 30000,
  reporter: process.env.REPORTER ?? 'spec',
  grep: process.env.GREP ?? 'plaintext',
  invert: process.env.GREP == null
})
mocha.suite.emit('pre-require', globalThis, 'interop', mocha)
const suites = {
  connect: connectInteropTests,
  streams: streamInteropTests,
  relay: relayInteropTests,
  dht: dhtInteropTests,
  pubsub: pubsubInteropTests
}
for (const name of (process.env.SUITES ?? 'connect,streams,relay').split(',')) {
  suites[name](factory)
}
mocha.run(failures => {
  process.exitCode = failures
  setTimeout(() => process.exit(failures), 500)
})
