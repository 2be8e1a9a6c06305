/**
 * The demo: serves a large generated object over HTTP with faults injected (dropped
 * connections, 503 + Retry-After, a stall), copies it with `copyToFile`, interrupts the copy
 * part-way as a crash would, copies again (resuming from the checkpoint), and reports what the
 * reader did: throughput, chunk sizes, latency, retries, memory and the sha256 check.
 */
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { MultiBar, Presets } from "cli-progress"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { MemoryMonitor } from "../services/MemoryMonitor.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { formatSize, MiB } from "../services/ReadOptions.js"
import { ExitCode } from "./CommandLine.js"
import { makeProgress } from "./ProgressBar.js"
import type { CopyProgress, CopySummary } from "./FileCopy.js"
import { copyToFile } from "./FileCopy.js"
import type { FaultEvent, FaultPlan } from "./DemoServer.js"
import { defaultFaultPlan, makeDemoServer } from "./DemoServer.js"

/** How the demo runs; every field has a default. */
export interface DemoOptions {
  /** Size of the served object in bytes (default 256 MiB). */
  readonly size?: number
  /** The fraction of the object after which the first copy is interrupted (default 0.4). */
  readonly interruptAt?: number
  /** The faults the server injects (default `defaultFaultPlan(size)`). */
  readonly faults?: FaultPlan
  /** The reader's stall timeout in milliseconds (default 2000). */
  readonly stallTimeoutMs?: number
  /** Draw progress bars (default: when stdout is a terminal). */
  readonly progress?: boolean
  /** Where the copy is written; kept afterwards. A temporary directory, removed at the end, when absent. */
  readonly directory?: string
}

/** What the demo did. */
export interface DemoReport {
  /** 0 when the copy's sha256 matches the server's, 1 otherwise. */
  readonly exitCode: number
  /** The output file. */
  readonly output: string
  /** The object's URL. */
  readonly source: string
  /** Bytes in the finished copy. */
  readonly bytes: number
  /** Where the second copy resumed from (the checkpoint the interrupted copy left). */
  readonly resumedFrom: number
  /** The most connections the copy fetched over at once (segments). */
  readonly connections: number
  /** Bytes read over both copies, per second of both copies' wall time, in 10^6 bytes. */
  readonly mbPerSec: number
  /** Median and largest chunk size the sizer chose, in bytes. */
  readonly meanChunkBytes: number
  readonly maxChunkBytes: number
  /** 95th percentile of the time to read one chunk, in milliseconds. */
  readonly p95ChunkMs: number
  /** Failed attempts retried, and resumes after a failure, over both copies. */
  readonly retries: number
  readonly recoveries: number
  /** The highest resident set size sampled, in bytes. */
  readonly peakRss: number
  /** The copy's sha256, and the server's. */
  readonly sha256: string | null
  readonly expectedSha256: string
  /** The faults the server injected. */
  readonly faults: ReadonlyArray<FaultEvent>
}

/** A progress that forwards to `inner` and calls `onCross` once when `threshold` bytes are done. */
const watchProgress = (
  inner: CopyProgress | undefined,
  threshold: number,
  onCross: (done: number) => void
): CopyProgress => {
  let done = 0
  let crossed = false
  return {
    start: (source, total, startOffset) => {
      done = startOffset
      inner?.start(source, total, startOffset)
    },
    advance: (bytes) => {
      done += bytes
      inner?.advance(bytes)
      if (!crossed && done >= threshold) {
        crossed = true
        onCross(done)
      }
    },
    stop: () => inner?.stop()
  }
}

/** Progress bars drawn as the `read` command draws them. */
const makeBars = () =>
  new MultiBar({
    format: "{bar} {percentage}% | {size} | {source}",
    hideCursor: true,
    clearOnComplete: false
  }, Presets.shades_classic)

/** A temporary directory removed with the scope, or the caller's, kept. */
const workDirectory = (directory: string | undefined) =>
  directory !== undefined
    ? Effect.succeed(directory)
    : Effect.acquireRelease(
      Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "streaming-reader-demo-"))),
      (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
    )

const describeFault = (event: FaultEvent) =>
  event.kind === "drop"
    ? `connection dropped at ${formatSize(event.offset)}`
    : event.kind === "stall"
    ? `stalled at ${formatSize(event.offset)}`
    : `503 Retry-After: 1 for a range from ${formatSize(event.offset)}`

const describePlan = (plan: FaultPlan, stallTimeoutMs: number) =>
  [
    plan.dropAt.length > 0 ? `connection drops at ${plan.dropAt.map(formatSize).join(", ")}` : undefined,
    plan.unavailableFrom.length > 0
      ? `503 + Retry-After: 1 for the first range from ${plan.unavailableFrom.map(formatSize).join(", ")}`
      : undefined,
    plan.stallAt.length > 0
      ? `a stall at ${plan.stallAt.map(formatSize).join(", ")} (stall timeout ${stallTimeoutMs / 1000}s)`
      : undefined
  ].filter((part) => part !== undefined).join("; ") || "none"

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`

/** Runs the demo and prints its report; fails with the copy's error when a copy fails for good. */
export const demo = Effect.fn("demo")(function*(options: DemoOptions = {}) {
  const metrics = yield* ReaderMetrics
  const monitor = yield* MemoryMonitor
  const size = options.size ?? 256 * MiB
  const plan = options.faults ?? defaultFaultPlan(size)
  const stallTimeoutMs = options.stallTimeoutMs ?? 2_000
  const interruptAt = Math.floor(size * (options.interruptAt ?? 0.4))
  const showProgress = options.progress ?? process.stdout.isTTY === true

  const server = yield* makeDemoServer({ size, faults: plan })
  const dir = yield* workDirectory(options.directory)
  const out = NodePath.join(dir, "demo.bin")
  const readOptions: ReadOptionsInput = { stallTimeoutMs, retries: 10 }

  yield* Console.log(`streaming-reader demo: a ${formatSize(size)} object over HTTP, with faults, copied twice`)
  yield* Console.log(`  server  ${server.url} (bytes generated on the fly, ETag ${server.etag})`)
  yield* Console.log(`  faults  ${describePlan(plan, stallTimeoutMs)}`)
  yield* Console.log(`  output  ${out}`)

  /** One copy with its own progress bars, stopped when it ends. */
  const copy = (onCross?: (done: number) => void) =>
    Effect.suspend(() => {
      const bars = showProgress ? makeBars() : undefined
      const bar = bars === undefined ? undefined : makeProgress(bars)
      const progress = onCross === undefined ? bar : watchProgress(bar, interruptAt, onCross)
      return copyToFile({
        source: server.url,
        out,
        options: readOptions,
        hash: true,
        ...(progress === undefined ? {} : { progress })
      })
        .pipe(Effect.ensuring(Effect.sync(() => bars?.stop())))
    })

  const startedAt = yield* Clock.currentTimeMillis
  yield* Console.log(`run 1: copying; it will be interrupted after ${formatSize(interruptAt)}, as a crash would`)
  const crossed = yield* Deferred.make<number>()
  const first = yield* Effect.fork(copy((done) => Deferred.unsafeDone(crossed, Exit.succeed(done))))
  const interruptedAt = yield* Effect.raceFirst(
    Deferred.await(crossed),
    Fiber.join(first).pipe(Effect.as(undefined))
  )
  yield* Fiber.interrupt(first)
  yield* Console.log(
    interruptedAt === undefined
      ? "run 1: finished before the interruption point"
      : `run 1: interrupted at ${formatSize(interruptedAt)} (${Math.round(interruptedAt / size * 100)}%); ` +
        "the checkpoint stays in the store"
  )

  yield* Console.log("run 2: the same copy again, resuming from the checkpoint")
  const summary: CopySummary = yield* copy()
  const wallMs = (yield* Clock.currentTimeMillis) - startedAt
  yield* Console.log(
    `run 2: resumed from ${formatSize(summary.resumedFrom)}, finished in ${seconds(summary.durationMs)}`
  )

  const stats = yield* metrics.stats(summary.source)
  const expectedSha256 = yield* server.sha256
  const peakRss = yield* monitor.peakRss
  const matches = summary.sha256 === expectedSha256
  const report: DemoReport = {
    exitCode: matches ? ExitCode.Done : ExitCode.ReadFailed,
    output: out,
    source: summary.source,
    bytes: summary.bytes,
    resumedFrom: summary.resumedFrom,
    connections: summary.segments,
    mbPerSec: Number((stats.bytes / 1e6 / Math.max(wallMs / 1000, 0.001)).toFixed(1)),
    meanChunkBytes: stats.meanChunkBytes,
    maxChunkBytes: stats.maxChunkBytes,
    p95ChunkMs: stats.p95ChunkMs,
    retries: stats.retries,
    recoveries: stats.recoveries,
    peakRss,
    sha256: summary.sha256,
    expectedSha256,
    faults: server.faults()
  }

  yield* Console.log("")
  yield* Console.log("report")
  yield* Console.log(`  bytes          ${report.bytes} (${formatSize(report.bytes)})`)
  yield* Console.log(
    `  throughput     ${report.mbPerSec} MB/s (${formatSize(stats.bytes)} read in ${
      seconds(wallMs)
    }, fault waits included)`
  )
  yield* Console.log(
    `  chunk sizes    mean ${formatSize(report.meanChunkBytes)}, max ${formatSize(report.maxChunkBytes)} ` +
      `(${stats.chunks} chunks, chosen by the adaptive sizer)`
  )
  yield* Console.log(`  chunk latency  p95 ${report.p95ChunkMs.toFixed(2)} ms`)
  yield* Console.log(`  retries        ${report.retries} (${report.recoveries} recoveries)`)
  for (const event of report.faults) yield* Console.log(`    fault        ${describeFault(event)}`)
  yield* Console.log(`  connections    ${report.connections} at once (ranged segments, each resumed on its own)`)
  yield* Console.log(`  resumed from   ${formatSize(report.resumedFrom)} after the interruption`)
  yield* Console.log(`  peak memory    ${(report.peakRss / 1e6).toFixed(1)} MB RSS`)
  yield* Console.log(`  sha256         ${report.sha256 ?? "none"} ${matches ? "OK" : "MISMATCH"}`)
  if (!matches) yield* Console.log(`  expected       ${expectedSha256}`)
  return report
}, Effect.scoped)
