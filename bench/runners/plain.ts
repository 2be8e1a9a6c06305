/**
 * The plain Node baselines, one job per process: `stream.pipeline` copy at defaults, a
 * `FileHandle.read` loop reusing one buffer, and `fetch` and `undici.request` draining a
 * response body (each loads its `undici` before the work is timed, as our runner builds its
 * layers first).
 * Usage: `node --import tsx bench/runners/plain.ts '<PlainJob as JSON>'`.
 */
import * as NodeFs from "node:fs"
import * as NodeFsPromises from "node:fs/promises"
import { pipeline } from "node:stream/promises"
import type { request as UndiciRequest } from "undici"
import type { PlainJob, RunnerResult, WarmPass } from "./protocol.js"
import { emitError, emitResult, jobArgument, monotonicUs, readHeap, startSampler } from "./protocol.js"

/** Copies with `stream.pipeline` at Node's defaults (64 KiB chunks). */
const pipelineCopy = async (src: string, out: string): Promise<number> => {
  await pipeline(NodeFs.createReadStream(src), NodeFs.createWriteStream(out))
  return (await NodeFsPromises.stat(out)).size
}

/** Reads a file with `FileHandle.read` into one reused buffer of `chunk` bytes. */
const fileHandleRead = async (src: string, chunk: number): Promise<number> => {
  const handle = await NodeFsPromises.open(src, "r")
  try {
    const buffer = Buffer.allocUnsafeSlow(chunk)
    let position = 0
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, chunk, position)
      if (bytesRead === 0) return position
      position += bytesRead
    }
  } finally {
    await handle.close()
  }
}

/** Drains a `fetch` response body. */
const fetchRead = async (url: string): Promise<number> => {
  const response = await fetch(url)
  if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status} from ${url}`)
  const reader = response.body.getReader()
  let bytes = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return bytes
    bytes += value.byteLength
  }
}

/** `undici`'s `request`, loaded before the work starts for the jobs that use it. */
let undiciRequest: typeof UndiciRequest | undefined

/** Drains an `undici.request` response body. */
const undiciRead = async (url: string): Promise<number> => {
  const { body, statusCode } = await undiciRequest!(url)
  if (statusCode !== 200) {
    await body.dump()
    throw new Error(`HTTP ${statusCode} from ${url}`)
  }
  let bytes = 0
  for await (const chunk of body) bytes += (chunk as Buffer).length
  return bytes
}

const work = (job: PlainJob): Promise<number> => {
  switch (job.kind) {
    case "pipeline-copy":
      return pipelineCopy(job.src, job.out)
    case "fh-read":
      return fileHandleRead(job.src, job.chunk)
    case "fetch-read":
      return fetchRead(job.url)
    case "undici-read":
      return undiciRead(job.url)
  }
}

const main = async () => {
  const job = jobArgument<PlainJob>()
  if (job.kind === "undici-read") undiciRequest = (await import("undici")).request
  // Touching `Headers` loads Node's own undici, which the first `fetch` would load inside the timed work.
  if (job.kind === "fetch-read") void globalThis.Headers
  const idleRss = process.memoryUsage.rss()
  const memoryBefore = readHeap()
  const sampler = startSampler(false)
  const timed = async () => {
    const startUs = monotonicUs()
    const startedAt = performance.now()
    const bytes = await work(job)
    const ms = performance.now() - startedAt
    const windowUs: readonly [number, number] = [startUs, monotonicUs()]
    return { bytes, ms, windowUs }
  }
  const first = await timed()
  const peakRss = sampler.peak()
  const memoryAfter = readHeap()
  let warm: WarmPass | undefined
  if (job.warm === true) {
    if (job.kind === "pipeline-copy") await NodeFsPromises.rm(job.out, { force: true })
    const second = await timed()
    if (second.bytes !== first.bytes) throw new Error(`second pass moved ${second.bytes} bytes, first ${first.bytes}`)
    warm = { ms: second.ms, windowUs: second.windowUs }
  }
  sampler.stop()
  const result: RunnerResult = {
    bytes: first.bytes,
    ms: first.ms,
    idleRss,
    peakRss,
    windowUs: first.windowUs,
    memoryBefore,
    memoryAfter,
    ...(warm === undefined ? {} : { warm })
  }
  emitResult(result)
}

main().catch(emitError)
