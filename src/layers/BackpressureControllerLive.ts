/**
 * BackpressureControllerLive: derives one pressure level from the memory budget, the RSS growth
 * rate, the number of active reads and how far consumers lag behind reads, and publishes it in a
 * `SubscriptionRef`. The thresholds are in the doc comment of `classify`.
 */
import { Clock, Duration, Effect, Layer, Schedule, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import { AdaptiveMemoryManager } from "../services/AdaptiveMemoryManager.js"
import { BackpressureController, pressureLevels } from "../services/BackpressureController.js"
import type { BackpressureControllerShape, PressureLevel } from "../services/BackpressureController.js"
import { MemoryMonitor } from "../services/MemoryMonitor.js"

/** How the controller judges concurrency and throughput, and how often it recomputes. */
export interface BackpressureControllerOptions {
  /** Active reads the process is sized for; 64 by default. */
  readonly maxStreams?: number
  /** Time between two periodic recomputations; 500 ms by default. */
  readonly interval?: Duration.DurationInput
  /** Consumer reports older than this are forgotten; 10 s by default. */
  readonly window?: Duration.DurationInput
}

/** What the level is computed from. */
export interface PressureInputs {
  /** Budget bytes reserved divided by the budget's limit. */
  readonly budgetUse: number
  /** RSS growth in MB/s from the memory monitor. */
  readonly growthMbPerSec: number
  /** Reads currently tracked. */
  readonly activeStreams: number
  /** Reads the process is sized for. */
  readonly maxStreams: number
  /** Total consumer wait over total read time of the recent reports; `undefined` with too few reports. */
  readonly consumerLag: number | undefined
}

/** Consumer reports kept at most; the lag is judged over these. */
export const maxConsumerReports = 32

/** Fewer recent consumer reports than this say nothing about throughput. */
export const minConsumerReports = 4

/** The floor on each report's read time, in ms, so that a read served from cache does not make any wait look huge. */
export const minReadMs = 1

const rank = (level: PressureLevel): number => pressureLevels.indexOf(level)

const byThresholds = (value: number, low: number, high: number, critical: number): PressureLevel =>
  value >= critical ? "critical" : value >= high ? "high" : value >= low ? "low" : "none"

/**
 * The level is the highest of the levels of its factors:
 *
 * | factor | low | high | critical |
 * |---|---|---|---|
 * | memory budget in use (inUse / limit) | >= 50 % | >= 75 % | >= 95 % |
 * | RSS growth (MB/s, memory monitor) | >= 5 | >= 20 | >= 50 |
 * | active reads / maxStreams | >= 75 % | >= 100 % | never |
 * | consumer lag (sum waitMs / sum readMs of the recent reports) | >= 4 | never | never |
 *
 * A slow consumer already holds its read back (reads are pulled), and a read holds at most two
 * chunks, so lag alone never makes pressure high: shrinking chunks would only slow the copy.
 * The consumer lag needs at least `minConsumerReports` reports from the window; each report's
 * read time counts as at least `minReadMs`.
 */
export const classify = (inputs: PressureInputs): PressureLevel => {
  const factors: ReadonlyArray<PressureLevel> = [
    byThresholds(inputs.budgetUse, 0.5, 0.75, 0.95),
    byThresholds(inputs.growthMbPerSec, 5, 20, 50),
    byThresholds(inputs.maxStreams > 0 ? inputs.activeStreams / inputs.maxStreams : 0, 0.75, 1, Infinity),
    inputs.consumerLag === undefined ? "none" : byThresholds(inputs.consumerLag, 4, Infinity, Infinity)
  ]
  return factors.reduce((worst, level) => rank(level) > rank(worst) ? level : worst, "none")
}

interface ConsumerReport {
  readonly atMs: number
  readonly readMs: number
  readonly waitMs: number
}

/** A controller that recomputes on `refresh`, when a tracked read starts or ends, and every `interval`. */
export const make = (
  options: BackpressureControllerOptions = {}
): Effect.Effect<BackpressureControllerShape, never, AdaptiveMemoryManager | MemoryMonitor | Scope.Scope> =>
  Effect.gen(function*() {
    const memory = yield* AdaptiveMemoryManager
    const monitor = yield* MemoryMonitor
    const maxStreams = options.maxStreams ?? 64
    const interval = Duration.decode(options.interval ?? "500 millis")
    const windowMs = Duration.toMillis(options.window ?? "10 seconds")

    const level = yield* SubscriptionRef.make<PressureLevel>("none")
    const lock = yield* Effect.makeSemaphore(1)
    let activeStreams = 0
    let reports: ReadonlyArray<ConsumerReport> = []

    const consumerLag = (now: number): number | undefined => {
      reports = reports.filter((report) => report.atMs >= now - windowMs)
      if (reports.length < minConsumerReports) return undefined
      let waitMs = 0
      let readMs = 0
      for (const report of reports) {
        waitMs += Number.isFinite(report.waitMs) ? Math.max(0, report.waitMs) : 0
        readMs += Number.isFinite(report.readMs) ? Math.max(minReadMs, report.readMs) : minReadMs
      }
      return waitMs / readMs
    }

    const refresh: Effect.Effect<PressureLevel> = Effect.gen(function*() {
      const inUse = yield* memory.inUse
      const growthMbPerSec = yield* monitor.growthMbPerSec
      const now = yield* Clock.currentTimeMillis
      const next = classify({
        budgetUse: memory.limit > 0 ? inUse / memory.limit : 0,
        growthMbPerSec,
        activeStreams,
        maxStreams,
        consumerLag: consumerLag(now)
      })
      if (next !== (yield* SubscriptionRef.get(level))) yield* SubscriptionRef.set(level, next)
      return next
    }).pipe(lock.withPermits(1), Effect.withSpan("BackpressureController.refresh"))

    yield* refresh
    yield* refresh.pipe(
      Effect.schedule(Schedule.spaced(interval)),
      Effect.interruptible,
      Effect.forkScoped
    )

    const trackStream: Effect.Effect<void, never, Scope.Scope> = Effect.acquireRelease(
      Effect.zipRight(Effect.sync(() => activeStreams++), refresh),
      () => Effect.zipRight(Effect.sync(() => activeStreams--), refresh)
    ).pipe(Effect.asVoid, Effect.withSpan("BackpressureController.trackStream"))

    return BackpressureController.of({
      level,
      trackStream,
      // Runs once per chunk, so untraced: a span per chunk would cost more than the work.
      reportConsumer: Effect.fnUntraced(function*(observation: {
        readonly readMs: number
        readonly waitMs: number
      }) {
        const atMs = yield* Clock.currentTimeMillis
        reports = [...reports, { atMs, readMs: observation.readMs, waitMs: observation.waitMs }].slice(
          -maxConsumerReports
        )
      }),
      refresh
    })
  })

/** The pressure level of the process, recomputed for as long as the layer lives. */
export const layer = (
  options: BackpressureControllerOptions = {}
): Layer.Layer<BackpressureController, never, AdaptiveMemoryManager | MemoryMonitor> =>
  Layer.scoped(BackpressureController, make(options))
