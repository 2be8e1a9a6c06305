/**
 * AdaptiveRateLimiterLive: token buckets in bytes per second, one global and one per read, whose
 * effective rate backs off under pressure. Time comes from `Clock`, so `TestClock` drives it.
 */
import { Clock, Duration, Effect, Layer, SubscriptionRef } from "effect"
import { AdaptiveRateLimiter } from "../services/AdaptiveRateLimiter.js"
import type { AdaptiveRateLimiterShape, StreamRateLimiter } from "../services/AdaptiveRateLimiter.js"
import { BackpressureController } from "../services/BackpressureController.js"
import type { PressureLevel } from "../services/BackpressureController.js"
import { KiB } from "../services/ReadOptions.js"

/** The global rate and the smallest burst. */
export interface AdaptiveRateLimiterOptions {
  /** Bytes per second for all reads together; unlimited when absent. */
  readonly globalRate?: number
  /** A bucket holds at least this many bytes (one maximum chunk); 256 KiB by default. */
  readonly minBurst?: number
}

/** The share of the configured rate allowed at each pressure level. */
export const pressureFactor = (level: PressureLevel): number =>
  level === "critical" ? 0.25 : level === "high" ? 0.5 : 1

/**
 * One token bucket. Tokens may go negative: a take reserves its bytes at once and waits until the
 * debt is paid back at the effective rate, so takes are served in arrival order, a take larger
 * than the bucket passes after paying its time, and the long-run rate is exact.
 */
interface Bucket {
  /** Reserves `bytes` at `nowMs` and returns how long, in ms, the caller must wait. */
  readonly reserve: (bytes: number, nowMs: number, factor: number) => number
  /** Gives back bytes reserved by a take that was interrupted before it was paid. */
  readonly refund: (bytes: number) => void
}

const makeBucket = (bytesPerSecond: number, minBurst: number): Bucket => {
  let tokens: number | undefined
  let lastMs = 0
  return {
    reserve: (bytes, nowMs, factor) => {
      const rate = bytesPerSecond * factor
      const capacity = Math.max(rate, minBurst)
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
  !isUnlimited(rate) && !(rate > 0) ? Effect.dieMessage(`AdaptiveRateLimiter: ${name} must be positive, got ${rate}`) : Effect.void

/** A rate limiter whose rates follow the BackpressureController's level (x0.5 high, x0.25 critical). */
export const make = (
  options: AdaptiveRateLimiterOptions = {}
): Effect.Effect<AdaptiveRateLimiterShape, never, BackpressureController> =>
  Effect.gen(function*() {
    const controller = yield* BackpressureController
    const minBurst = options.minBurst ?? 256 * KiB
    yield* invalidRate("globalRate", options.globalRate)
    const global = isUnlimited(options.globalRate) ? undefined : makeBucket(options.globalRate, minBurst)

    const forStream = Effect.fn("AdaptiveRateLimiter.forStream")(function*(bytesPerSecond?: number) {
      yield* invalidRate("bytesPerSecond", bytesPerSecond)
      const own = isUnlimited(bytesPerSecond) ? undefined : makeBucket(bytesPerSecond, minBurst)
      const buckets = [own, global].filter((bucket): bucket is Bucket => bucket !== undefined)

      const limiter: StreamRateLimiter = {
        // Runs once per chunk, so untraced: a span per chunk would cost more than the work.
        take: buckets.length === 0 ? Effect.succeed : Effect.fnUntraced(function*(bytes: number) {
          if (!(bytes > 0)) return bytes
          const factor = pressureFactor(yield* SubscriptionRef.get(controller.level))
          return yield* Effect.uninterruptibleMask((restore) =>
            Effect.gen(function*() {
              const nowMs = yield* Clock.currentTimeMillis
              const waitMs = Math.max(...buckets.map((bucket) => bucket.reserve(bytes, nowMs, factor)))
              if (waitMs <= 0) return bytes
              yield* restore(Effect.sleep(Duration.millis(Math.ceil(waitMs)))).pipe(
                Effect.onInterrupt(() => Effect.sync(() => buckets.forEach((bucket) => bucket.refund(bytes))))
              )
              return bytes
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
