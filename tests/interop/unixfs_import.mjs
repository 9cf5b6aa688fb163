// Reference UnixFS importer (ipfs-unixfs-importer) configured as `ipfs add` (kubo).
//
// Usage:
//   node unixfs_import.mjs JOBS.json      -> one JSON line per job: {"cid": "...", "size": N}
//   node unixfs_import.mjs --bench FILE [--repeat N] [--cid-version 1] [--raw-leaves true]
//       -> {"cid": "...", "bytes": N, "seconds": S}; S times only the import of a
//          buffer already in memory into a MemoryBlockstore (not Node start-up, not
//          reading the file): the best of N runs.
//
// JOBS.json is a list of {"path": P, "cidVersion": 0|1, "rawLeaves": bool}; P may
// be a file or a directory (imported recursively, like `ipfs add -r`).
import './polyfill.mjs'
import { readFile, readdir, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

/** Options equal to kubo's `ipfs add` (unixfs-v0-2015 profile) with the given CID flags. */
function kuboOptions (cidVersion, rawLeaves) {
  return {
    cidVersion,
    rawLeaves,
    chunker: fixedSize({ chunkSize: 262144 }),
    layout: balanced({ maxChildrenPerNode: 174 }),
    leafType: 'file',
    reduceSingleLeafToSelf: true,
    wrapWithDirectory: false,
    shardSplitThresholdBytes: 262144,
    shardSplitStrategy: 'links-bytes',
    fieldOrder: 'links-first'
  }
}

async function * walk (root, rel) {
  const info = await stat(root)
  if (!info.isDirectory()) {
    yield { path: rel, content: await readFile(root) }
    return
  }
  yield { path: rel }
  const names = await readdir(root)
  for (const name of names) {
    yield * walk(join(root, name), `${rel}/${name}`)
  }
}

async function importPath (path, cidVersion, rawLeaves) {
  const blockstore = new MemoryBlockstore()
  const info = await stat(path)
  let last
  if (info.isDirectory()) {
    for await (const entry of importer(walk(path, basename(path)), blockstore, kuboOptions(cidVersion, rawLeaves))) {
      last = entry
    }
  } else {
    const content = await readFile(path)
    for await (const entry of importer([{ content }], blockstore, kuboOptions(cidVersion, rawLeaves))) {
      last = entry
    }
  }
  return { cid: last.cid.toString(), size: Number(last.size) }
}

async function bench (args) {
  const file = args[0]
  let repeat = 3
  let cidVersion = 1
  let rawLeaves = true
  for (let i = 1; i < args.length; i += 2) {
    if (args[i] === '--repeat') repeat = Number(args[i + 1])
    else if (args[i] === '--cid-version') cidVersion = Number(args[i + 1])
    else if (args[i] === '--raw-leaves') rawLeaves = args[i + 1] === 'true'
  }
  const content = await readFile(file)
  let best = Infinity
  let cid
  for (let r = 0; r < repeat; r++) {
    const blockstore = new MemoryBlockstore()
    const t0 = process.hrtime.bigint()
    for await (const entry of importer([{ content }], blockstore, kuboOptions(cidVersion, rawLeaves))) {
      cid = entry.cid.toString()
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    best = Math.min(best, seconds)
  }
  process.stdout.write(JSON.stringify({ cid, bytes: content.length, seconds: best }) + '\n')
}

async function main () {
  const args = process.argv.slice(2)
  if (args[0] === '--bench') {
    await bench(args.slice(1))
    return
  }
  const jobs = JSON.parse(await readFile(args[0], 'utf8'))
  for (const job of jobs) {
    const result = await importPath(job.path, job.cidVersion, job.rawLeaves)
    process.stdout.write(JSON.stringify(result) + '\n')
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`)
  process.exit(1)
})
