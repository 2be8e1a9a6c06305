/**
 * MemoryMonitorLive: samples process memory on a `Schedule` in a scoped fiber, keeps the latest
 * sample, the peak RSS and the RSS growth rate over a sliding window of `Clock` time. Nothing
 * here runs per chunk: one `process.memoryUsage()` per interval, and the growth rate is computed
 * only when the memory manager and the controller read it (every 500 ms each).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { MemoryMonitor } from "../services/MemoryMonitor.js"
import type { MemoryMonitorShape, MemorySample } from "../services/MemoryMonitor.js"

/** One raw reading of process memory, in bytes, as `process.memoryUsage()` gives it. */
export interface MemoryReading {
  readonly rss: number
  readonly heapUsed: number
  readonly arrayBuffers: number
}

/** How the monitor samples: how often, over which window growth is measured, and how memory is read. */
export interface MemoryMonitorOptions {
  /** Time between two samples; 250 ms by default. */
  readonly interval?: Duration.DurationInput
  /** The sliding window the growth rate is measured over; 10 s by default. */
  readonly window?: Duration.DurationInput
  /** Reads process memory; `process.memoryUsage()` by default (tests inject a fake). */
  readonly read?: () => MemoryReading
}

/** Bytes in the "MB" of `growthMbPerSec` (a mebibyte, as Node tools print memory). */
export const bytesPerMb = 1024 * 1024

const readProcessMemory = (): MemoryReading => {
  const usage = process.memoryUsage()
  return { rss: usage.rss, heapUsed: usage.heapUsed, arrayBuffers: usage.arrayBuffers }
}

/** Least-squares slope of RSS over time, in MB/s; 0 with fewer than two samples or no time between them. */
const growthOf = (samples: ReadonlyArray<MemorySample>): number => {
  if (samples.length < 2) return 0
  const n = samples.length
  const t0 = samples[0]!.atMs
  let meanT = 0
  let meanR = 0
  for (const s of samples) {
    meanT += (s.atMs - t0) / n
    meanR += s.rss / n
  }
  let covariance = 0
  let variance = 0
  for (const s of samples) {
    const dt = s.atMs - t0 - meanT
    covariance += dt * (s.rss - meanR)
    variance += dt * dt
  }
  if (variance === 0) return 0
  return (covariance / variance) * 1000 / bytesPerMb
}

/** A memory monitor that takes a first sample at once, then one per `interval` until its scope closes. */
export const make = (options: MemoryMonitorOptions = {}): Effect.Effect<MemoryMonitorShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const read = options.read ?? readProcessMemory
    const interval = Duration.decode(options.interval ?? "250 millis")
    const windowMs = Duration.toMillis(options.window ?? "10 seconds")

    let samples: ReadonlyArray<MemorySample> = []
    let peak = 0

    const sample: Effect.Effect<MemorySample> = Effect.gen(function*() {
      const atMs = yield* Clock.currentTimeMillis
      const reading = yield* Effect.sync(read)
      const taken: MemorySample = {
        atMs,
        rss: reading.rss,
        heapUsed: reading.heapUsed,
        arrayBuffers: reading.arrayBuffers
      }
      samples = [...samples.filter((s) => s.atMs >= atMs - windowMs), taken]
      peak = Math.max(peak, taken.rss)
      return taken
    }).pipe(Effect.withSpan("MemoryMonitor.sample"))

    const first = yield* sample

    yield* sample.pipe(
      Effect.catchAllDefect((defect) => Effect.logWarning("MemoryMonitor: sampling failed", defect)),
      Effect.schedule(Schedule.fixed(interval)),
      Effect.interruptible,
      Effect.forkScoped
    )

    return MemoryMonitor.of({
      sample,
      latest: Effect.sync(() => samples[samples.length - 1] ?? first),
      peakRss: Effect.sync(() => peak),
      growthMbPerSec: Effect.map(Clock.currentTimeMillis, (now) => {
        const recent = samples.filter((s) => s.atMs >= now - windowMs && s.atMs <= now)
        // Start-up (loading code, first buffers) is not growth: judge only a half-full window.
        const spanMs = recent.length > 0 ? recent[recent.length - 1]!.atMs - recent[0]!.atMs : 0
        return spanMs >= windowMs / 2 ? growthOf(recent) : 0
      })
    })
  })

/** The memory monitor, sampling on its schedule for as long as the layer lives. */
export const layer = (options: MemoryMonitorOptions = {}): Layer.Layer<MemoryMonitor> =>
  Layer.scoped(MemoryMonitor, make(options))
