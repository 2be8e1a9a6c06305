/**
 * BackpressureControllerLive: derives one pressure level from the memory budget, the RSS growth
 * rate, the number of active reads and how far consumers lag behind reads, and publishes it in a
 * `SubscriptionRef`. The thresholds are in the doc comment of `classify`; what each level does is
 * in the doc comment of the service. New reads are held back here, in `trackStream`.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type * as Scope from "effect/Scope"
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
  /** Longest a new read waits for the level to drop below `high` before it starts anyway; 2 s by default. */
  readonly admissionWait?: Duration.DurationInput
}

/** How long a new read waits at most while the level is `high` or `critical`. */
export const defaultAdmissionWait: Duration.Duration = Duration.seconds(2)

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

/** Whether a level holds new reads back. */
const holdsReadsBack = (level: PressureLevel): boolean => rank(level) >= rank("high")

/**
 * A controller that recomputes on `refresh`, when a tracked read starts or ends, and every
 * `interval`. Consumer reports go into a fixed ring of `maxConsumerReports` slots, so a report
 * allocates nothing and the lag is computed only on a refresh.
 */
export const make = (
  options: BackpressureControllerOptions = {}
): Effect.Effect<BackpressureControllerShape, never, AdaptiveMemoryManager | MemoryMonitor | Scope.Scope> =>
  Effect.gen(function*() {
    const memory = yield* AdaptiveMemoryManager
    const monitor = yield* MemoryMonitor
    const clock = yield* Effect.clock
    const maxStreams = options.maxStreams ?? 64
    const interval = Duration.decode(options.interval ?? "500 millis")
    const windowMs = Duration.toMillis(options.window ?? "10 seconds")
    const admissionWait = Duration.decode(options.admissionWait ?? defaultAdmissionWait)

    const level = yield* SubscriptionRef.make<PressureLevel>("none")
    const lock = yield* Effect.makeSemaphore(1)
    let latest: PressureLevel = "none"
    let activeStreams = 0

    const reportAt = new Float64Array(maxConsumerReports)
    const reportReadMs = new Float64Array(maxConsumerReports)
    const reportWaitMs = new Float64Array(maxConsumerReports)
    let reportCount = 0
    let reportNext = 0

    const record = (readMs: number, waitMs: number) => {
      reportAt[reportNext] = clock.unsafeCurrentTimeMillis()
      reportReadMs[reportNext] = Number.isFinite(readMs) ? Math.max(minReadMs, readMs) : minReadMs
      reportWaitMs[reportNext] = Number.isFinite(waitMs) ? Math.max(0, waitMs) : 0
      reportNext = (reportNext + 1) % maxConsumerReports
      if (reportCount < maxConsumerReports) reportCount++
    }

    const consumerLag = (now: number): number | undefined => {
      let recent = 0
      let waitMs = 0
      let readMs = 0
      for (let slot = 0; slot < reportCount; slot++) {
        if (reportAt[slot]! < now - windowMs) continue
        recent++
        waitMs += reportWaitMs[slot]!
        readMs += reportReadMs[slot]!
      }
      return recent < minConsumerReports ? undefined : waitMs / readMs
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
      if (next !== latest) {
        latest = next
        yield* SubscriptionRef.set(level, next)
      }
      return next
    }).pipe(lock.withPermits(1), Effect.withSpan("BackpressureController.refresh"))

    yield* refresh
    yield* refresh.pipe(
      Effect.schedule(Schedule.spaced(interval)),
      Effect.interruptible,
      Effect.forkScoped
    )

    /** Waits, at most `admissionWait`, until the level is below `high`; at once when it already is. */
    const admission: Effect.Effect<void> = Effect.suspend(() =>
      holdsReadsBack(latest)
        ? level.changes.pipe(
          Stream.filter((next) => !holdsReadsBack(next)),
          Stream.take(1),
          Stream.runDrain,
          Effect.timeoutOption(admissionWait),
          Effect.flatMap((admitted) =>
            Option.isNone(admitted)
              ? Effect.logDebug(
                `pressure still ${latest} after ${Duration.format(admissionWait)}: the read starts anyway`
              )
              : Effect.void
          )
        )
        : Effect.void
    )

    const trackStream: Effect.Effect<void, never, Scope.Scope> = Effect.zipRight(
      admission,
      Effect.acquireRelease(
        Effect.zipRight(Effect.sync(() => activeStreams++), refresh),
        () => Effect.zipRight(Effect.sync(() => activeStreams--), refresh)
      )
    ).pipe(Effect.asVoid, Effect.withSpan("BackpressureController.trackStream"))

    return BackpressureController.of({
      level,
      current: Effect.sync(() => latest),
      trackStream,
      // Runs once per chunk: one synchronous step into the ring, no span, no clock service lookup.
      reportConsumer: (observation) => Effect.sync(() => record(observation.readMs, observation.waitMs)),
      refresh
    })
  })

/** The pressure level of the process, recomputed for as long as the layer lives. */
export const layer = (
  options: BackpressureControllerOptions = {}
): Layer.Layer<BackpressureController, never, AdaptiveMemoryManager | MemoryMonitor> =>
  Layer.scoped(BackpressureController, make(options))
