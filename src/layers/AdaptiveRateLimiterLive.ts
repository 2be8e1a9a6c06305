/**
 * AdaptiveRateLimiterLive: token buckets in bytes per second, one global and one per read, whose
 * effective rate backs off under pressure. Time comes from `Clock`, so `TestClock` drives it.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AdaptiveRateLimiter } from "../services/AdaptiveRateLimiter.js"
import type { AdaptiveRateLimiterShape, StreamRateLimiter } from "../services/AdaptiveRateLimiter.js"
import { BackpressureController } from "../services/BackpressureController.js"
import type { PressureLevel } from "../services/BackpressureController.js"
import { KiB } from "../services/ReadOptions.js"

/** The global rate. */
export interface AdaptiveRateLimiterOptions {
  /** Bytes per second for all reads together; unlimited when absent. */
  readonly globalRate?: number
}

/**
 * The most one take grants, in ms of the rate: a capped read gets about four chunks a second,
 * each after a wait of at most this long, however large the chunk it asked for. Short enough for
 * steady progress (and a progress bar that moves), long enough that a chunk carries more than
 * its own overhead.
 */
export const grantMs = 250

/**
 * The smallest burst a bucket holds, unless that is more than one second of its rate. Together
 * with `grantMs`: a bucket holds `max(rate * 250 ms, min(4 KiB, rate * 1 s))`, so a capped read
 * starts at its rate instead of with a burst of a whole chunk (at 8 KiB/s: 4 KiB at once, then
 * 2 KiB every 250 ms), and a short pause of the consumer is made up without running ahead.
 */
export const minBurst = 4 * KiB

/** The share of the configured rate allowed at each pressure level. */
export const pressureFactor = (level: PressureLevel): number => level === "critical" ? 0.25 : level === "high" ? 0.5 : 1

/**
 * One token bucket. Tokens may go negative: a take reserves its grant at once and waits until the
 * debt is paid back at the effective rate, so takes are served in arrival order and the long-run
 * rate is exact.
 */
interface Bucket {
  /** The most one take may be granted at `factor`: `grantMs` of the rate, at least 1 byte. */
  readonly grant: (factor: number) => number
  /** Reserves `bytes` at `nowMs` and returns how long, in ms, the caller must wait. */
  readonly reserve: (bytes: number, nowMs: number, factor: number) => number
  /** Gives back bytes reserved by a take that was interrupted before it was paid. */
  readonly refund: (bytes: number) => void
}

const makeBucket = (bytesPerSecond: number): Bucket => {
  let tokens: number | undefined
  let lastMs = 0
  return {
    grant: (factor) => Math.max(1, Math.floor(bytesPerSecond * factor * grantMs / 1000)),
    reserve: (bytes, nowMs, factor) => {
      const rate = bytesPerSecond * factor
      const capacity = Math.max(rate * grantMs / 1000, Math.min(minBurst, rate))
      tokens = tokens === undefined
        ? capacity
        : Math.min(capacity, tokens + Math.max(0, nowMs - lastMs) / 1000 * rate)
      lastMs = nowMs
      tokens -= bytes
      return tokens < 0 ? -tokens / rate * 1000 : 0
    },
    refund: (bytes) => {
      if (tokens !== undefined) tokens += bytes
    }
  }
}

const isUnlimited = (rate: number | undefined): rate is undefined => rate === undefined || rate === Infinity

const invalidRate = (name: string, rate: number | undefined) =>
  !isUnlimited(rate) && !(rate > 0)
    ? Effect.dieMessage(`AdaptiveRateLimiter: ${name} must be positive, got ${rate}`)
    : Effect.void

/**
 * A rate limiter whose rates follow the BackpressureController's level (x0.5 high, x0.25 critical).
 * A take grants at most `grantMs` of the slowest rate that applies and waits until its grant is
 * paid; an interrupted take gives its grant back.
 */
export const make = (
  options: AdaptiveRateLimiterOptions = {}
): Effect.Effect<AdaptiveRateLimiterShape, never, BackpressureController> =>
  Effect.gen(function*() {
    const controller = yield* BackpressureController
    yield* invalidRate("globalRate", options.globalRate)
    const global = isUnlimited(options.globalRate) ? undefined : makeBucket(options.globalRate)

    const forStream = Effect.fn("AdaptiveRateLimiter.forStream")(function*(bytesPerSecond?: number) {
      yield* invalidRate("bytesPerSecond", bytesPerSecond)
      const own = isUnlimited(bytesPerSecond) ? undefined : makeBucket(bytesPerSecond)
      const buckets: ReadonlyArray<Bucket> = [own, global].filter((bucket): bucket is Bucket => bucket !== undefined)

      const limiter: StreamRateLimiter = {
        limited: buckets.length > 0,
        // Runs once per chunk, so untraced: a span per chunk would cost more than the work.
        take: buckets.length === 0 ? Effect.succeed : Effect.fnUntraced(function*(bytes: number) {
          if (!(bytes > 0)) return bytes
          const factor = pressureFactor(yield* SubscriptionRef.get(controller.level))
          let granted = bytes
          for (const bucket of buckets) granted = Math.min(granted, bucket.grant(factor))
          return yield* Effect.uninterruptibleMask((restore) =>
            Effect.gen(function*() {
              const nowMs = yield* Clock.currentTimeMillis
              let waitMs = 0
              for (const bucket of buckets) waitMs = Math.max(waitMs, bucket.reserve(granted, nowMs, factor))
              if (waitMs <= 0) return granted
              yield* restore(Effect.sleep(Duration.millis(Math.ceil(waitMs)))).pipe(
                Effect.onInterrupt(() => Effect.sync(() => buckets.forEach((bucket) => bucket.refund(granted))))
              )
              return granted
            })
          )
        })
      }
      return limiter
    })

    return AdaptiveRateLimiter.of({ forStream })
  })

/** The rate limiter, with an optional global rate. */
export const layer = (
  options: AdaptiveRateLimiterOptions = {}
): Layer.Layer<AdaptiveRateLimiter, never, BackpressureController> => Layer.effect(AdaptiveRateLimiter, make(options))
