/**
 * Reads one URL of the server's fault mode (cut connections, 503s) `reads` times at once in one
 * process, through the package's public API (`dist/index.js`, `EnhancedStack` at default options
 * but for the retries), and checks each read's byte count and sha256. Reports the peak RSS above
 * idle and the retries the reader made. The working directory must be the project root.
 * Usage: `node bench/runners/faulty.js '<FaultyJob as JSON>'`.
 */
import { Cause, Effect, Exit, Layer, Stream } from "effect"
import { createHash } from "node:crypto"
import * as NodePath from "node:path"
import { pathToFileURL } from "node:url"
import type * as Library from "../../src/index.js"
import type { FaultyJob, RunnerResult } from "./protocol.js"
import { emitError, emitResult, jobArgument, monotonicUs, readHeap, startSampler } from "./protocol.js"

const { EnhancedStack, PlatformLive, ReaderMetrics, StreamingReader } = (await import(
  pathToFileURL(NodePath.resolve("dist", "index.js")).href
)) as typeof Library

/** One read, drained into a sha256; fails unless it matches the object. */
const readChecked = (job: FaultyJob, index: number) =>
  Effect.gen(function*() {
    const reader = yield* StreamingReader
    const session = yield* reader.open(job.url, { retries: job.retries, maxRetryDelayMs: job.maxRetryDelayMs })
    const hash = createHash("sha256")
    const bytes = yield* Stream.runFold(session.stream, 0, (total, chunk) => {
      hash.update(chunk)
      return total + chunk.length
    })
    const digest = hash.digest("hex")
    if (bytes !== job.size || digest !== job.sha256) {
      return yield* Effect.dieMessage(
        `read ${index}: ${bytes} bytes, sha256 ${digest}; expected ${job.size}, ${job.sha256}`
      )
    }
    return { source: session.source, bytes }
  }).pipe(Effect.scoped)

const measure = (job: FaultyJob) =>
  Effect.gen(function*() {
    const idleRss = process.memoryUsage.rss()
    const memoryBefore = readHeap()
    const sampler = startSampler(true)
    const startUs = monotonicUs()
    const startedAt = performance.now()
    const reads = yield* Effect.forEach(Array.from({ length: job.reads }, (_, i) => i), (i) => readChecked(job, i), {
      concurrency: "unbounded"
    })
    const ms = performance.now() - startedAt
    const windowUs: readonly [number, number] = [startUs, monotonicUs()]
    const { peakRss, series } = sampler.stop()
    const memoryAfter = readHeap()
    const metrics = yield* ReaderMetrics
    const stats = yield* Effect.forEach(
      [...new Set(reads.map((read) => read.source))],
      (source) => metrics.stats(source)
    )
    const result: RunnerResult = {
      bytes: reads.reduce((total, read) => total + read.bytes, 0),
      ms,
      idleRss,
      peakRss,
      windowUs,
      reads: reads.length,
      retries: stats.reduce((total, s) => total + s.retries, 0),
      series,
      memoryBefore,
      memoryAfter
    }
    return result
  })

const main = async () => {
  const job = jobArgument<FaultyJob>()
  const layer = EnhancedStack().pipe(Layer.provideMerge(PlatformLive))
  const exit = await Effect.runPromiseExit(measure(job).pipe(Effect.provide(layer)))
  if (Exit.isSuccess(exit)) emitResult(exit.value)
  else emitError(Cause.pretty(exit.cause))
}

main().catch(emitError)
