/**
 * Our variants, one job per process, on the built library (`dist/`, what `npm run bench`
 * builds and the CLI runs; typed from `src/`; the working directory must be the project root): the copy program, read-only drains of the
 * basic and enhanced readers, plain `@effect/platform` `FileSystem.stream`, many concurrent
 * reads, and a soak loop.
 * Usage: `node --import tsx bench/runners/effect.ts '<EffectJob as JSON>'`.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import { Cause, Effect, Exit, Layer, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { pathToFileURL } from "node:url"
import type * as StacksModule from "../../src/layers/Stacks.js"
import type * as CopyModule from "../../src/layers/FileCopy.js"
import type * as MetricsModule from "../../src/services/ReaderMetrics.js"
import type { ReadStats } from "../../src/services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../../src/services/ReadOptions.js"
import type * as ReaderModule from "../../src/services/StreamingReader.js"
import type { ChunkFigures, EffectJob, RunnerResult, StackName, WarmPass } from "./protocol.js"
import { emitError, emitResult, jobArgument, monotonicUs, readHeap, settledReading, startSampler } from "./protocol.js"

/** A module of the built library; runners run with the project root as their working directory. */
const dist = (path: string) => pathToFileURL(NodePath.resolve("dist", path)).href

const Stacks = (await import(dist("layers/Stacks.js"))) as typeof StacksModule
const Copy = (await import(dist("layers/FileCopy.js"))) as typeof CopyModule
const Metrics = (await import(dist("services/ReaderMetrics.js"))) as typeof MetricsModule
const Reader = (await import(dist("services/StreamingReader.js"))) as typeof ReaderModule

/** What a job's work did, before the figures are read. */
interface Outcome {
  readonly bytes: number
  /** The sources read, as the reader names them (for `ReaderMetrics.stats`). */
  readonly sources: ReadonlyArray<string>
  readonly reads: number
}

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? 0 : sorted[Math.floor((sorted.length - 1) / 2)]!
}

/** One source's figures as they are; several sources': chunks summed, medians of medians, worst tails. */
const figuresOf = (stats: ReadonlyArray<ReadStats>): ChunkFigures => ({
  chunks: stats.reduce((total, s) => total + s.chunks, 0),
  meanChunkBytes: median(stats.map((s) => s.meanChunkBytes)),
  maxChunkBytes: Math.max(0, ...stats.map((s) => s.maxChunkBytes)),
  p50ChunkMs: median(stats.map((s) => s.p50ChunkMs)),
  p95ChunkMs: Math.max(0, ...stats.map((s) => s.p95ChunkMs)),
  p99ChunkMs: Math.max(0, ...stats.map((s) => s.p99ChunkMs))
})

/** Opens a read, drains its stream counting the bytes, and gives the reader's name for the source. */
const readOnce = (source: string, options: ReadOptionsInput) =>
  Effect.gen(function*() {
    const reader = yield* Reader.StreamingReader
    const session = yield* reader.open(source, options)
    const bytes = yield* Stream.runFold(session.stream, 0, (total, chunk) => total + chunk.length)
    return { source: session.source, bytes }
  }).pipe(Effect.scoped)

const workOf = (job: EffectJob) => {
  switch (job.kind) {
    case "copy":
      return Effect.map(
        Copy.copyToFile({
          source: job.src,
          out: job.out,
          options: job.checkpointEvery === undefined ? {} : { checkpointEvery: job.checkpointEvery },
          hash: false
        }),
        (summary): Outcome => ({ bytes: summary.bytes, sources: [summary.source], reads: 1 })
      )
    case "platform-read":
      return Effect.flatMap(
        FileSystem.FileSystem,
        (fs) =>
          Stream.runFold(fs.stream(job.src), 0, (total, chunk) => total + chunk.length).pipe(
            Effect.map((bytes): Outcome => ({ bytes, sources: [], reads: 1 }))
          )
      )
    case "read": {
      const options: ReadOptionsInput = {
        reuseBuffers: job.reuseBuffers,
        ...(job.chunkSize === undefined ? {} : { chunkSize: job.chunkSize }),
        ...(job.maxChunk === undefined ? {} : { maxChunk: job.maxChunk }),
        ...(job.segments === undefined ? {} : { segments: job.segments })
      }
      return Effect.map(readOnce(job.src, options), (read): Outcome => ({
        bytes: read.bytes,
        sources: [read.source],
        reads: 1
      }))
    }
    case "concurrent":
      return Effect.map(
        Effect.forEach(job.sources, (source) => readOnce(source, {}), { concurrency: "unbounded" }),
        (reads): Outcome => ({
          bytes: reads.reduce((total, read) => total + read.bytes, 0),
          sources: [...new Set(reads.map((read) => read.source))],
          reads: reads.length
        })
      )
    case "soak":
      return Effect.gen(function*() {
        const deadline = performance.now() + job.durationMs
        const names = new Set<string>()
        let bytes = 0
        let reads = 0
        while (performance.now() < deadline) {
          for (const source of job.sources) {
            if (performance.now() >= deadline) break
            const read = yield* readOnce(source, {})
            names.add(read.source)
            bytes += read.bytes
            reads++
          }
        }
        const outcome: Outcome = { bytes, sources: [...names], reads }
        return outcome
      })
  }
}

const keepsSeries = (job: EffectJob) => job.kind === "soak" || job.kind === "concurrent"

/** Chunk figures of the sources, with `chunks` counted from `before` (the figures of an earlier pass). */
const statsOf = (sources: ReadonlyArray<string>, before?: ChunkFigures) =>
  Effect.flatMap(Metrics.ReaderMetrics, (metrics) => Effect.forEach(sources, (source) => metrics.stats(source))).pipe(
    Effect.map((stats) => {
      if (stats.length === 0) return undefined
      const figures = figuresOf(stats)
      return before === undefined ? figures : { ...figures, chunks: figures.chunks - before.chunks }
    })
  )

/** Removes a copy's output, so that a second pass writes a new file as the first did. */
const freshOutput = (job: EffectJob) =>
  Effect.sync(() => {
    if (job.kind === "copy") NodeFs.rmSync(job.out, { force: true })
  })

/** Runs one pass of the job's work between two clock readings. */
const timed = (job: EffectJob) =>
  Effect.gen(function*() {
    const startUs = monotonicUs()
    const startedAt = performance.now()
    const outcome = yield* workOf(job)
    const ms = performance.now() - startedAt
    const windowUs: readonly [number, number] = [startUs, monotonicUs()]
    return { outcome, ms, windowUs }
  })

/**
 * Runs the job's work with RSS sampled, then reads the reader's figures; with `warm`, runs it
 * a second time and reports that pass apart (memory figures are those of the first pass).
 */
const measure = (job: EffectJob) =>
  Effect.gen(function*() {
    const settledBefore = settledReading()
    const idleRss = process.memoryUsage.rss()
    const memoryBefore = readHeap()
    const sampler = startSampler(keepsSeries(job))
    const first = yield* timed(job)
    const peakRss = sampler.peak()
    const memoryAfter = readHeap()
    const chunks = yield* statsOf(first.outcome.sources)
    let warm: WarmPass | undefined
    if (job.warm === true) {
      yield* freshOutput(job)
      const second = yield* timed(job)
      if (second.outcome.bytes !== first.outcome.bytes) {
        return yield* Effect.dieMessage(`second pass moved ${second.outcome.bytes} bytes, first ${first.outcome.bytes}`)
      }
      const warmChunks = yield* statsOf(second.outcome.sources, chunks)
      warm = { ms: second.ms, windowUs: second.windowUs, ...(warmChunks === undefined ? {} : { chunks: warmChunks }) }
    }
    const { series } = sampler.stop()
    const settledAfter = settledBefore === undefined ? undefined : settledReading()
    const result: RunnerResult = {
      bytes: first.outcome.bytes,
      ms: first.ms,
      idleRss,
      peakRss,
      windowUs: first.windowUs,
      reads: first.outcome.reads,
      memoryBefore,
      memoryAfter,
      ...(keepsSeries(job) ? { series } : {}),
      ...(chunks === undefined ? {} : { chunks }),
      ...(settledBefore === undefined || settledAfter === undefined
        ? {}
        : { settled: { before: settledBefore, after: settledAfter } }),
      ...(warm === undefined ? {} : { warm })
    }
    return result
  })

const stackOf = (
  stack: StackName,
  statePath: string | undefined
): Layer.Layer<StacksModule.ReaderServices, unknown, FileSystem.FileSystem | HttpClient.HttpClient> =>
  stack === "basic" ? Stacks.BasicStack : Stacks.EnhancedStack(statePath === undefined ? {} : { statePath })

const main = async () => {
  const job = jobArgument<EffectJob>()
  const stack = job.kind === "copy" || job.kind === "read" ? job.stack : "enhanced"
  const statePath = job.kind === "copy" ? job.statePath : undefined
  const layer = stackOf(stack, statePath).pipe(Layer.provideMerge(Stacks.PlatformLive))
  const exit = await Effect.runPromiseExit(measure(job).pipe(Effect.provide(layer)))
  if (Exit.isSuccess(exit)) emitResult(exit.value)
  else emitError(Cause.pretty(exit.cause))
}

main().catch(emitError)
