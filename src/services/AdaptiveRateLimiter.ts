/**
 * AdaptiveRateLimiter: token buckets in bytes per second, one global and one per read, whose
 * rate follows the pressure level and an optional cap.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/** The limiter of one read. */
export interface StreamRateLimiter {
  /** Whether any cap applies; without one every take is granted whole, at once. */
  readonly limited: boolean
  /**
   * Waits until some of `bytes` may be read under both the read's cap and the global rate and
   * returns how many (1 to `bytes`): a rate below the chunk size gets smaller chunks, not bursts.
   */
  readonly take: (bytes: number) => Effect.Effect<number>
}

/** Paces reads. */
export interface AdaptiveRateLimiterShape {
  /** A limiter for one read, capped at `bytesPerSecond` when given. */
  readonly forStream: (bytesPerSecond?: number) => Effect.Effect<StreamRateLimiter>
}

/** Paces reads. */
export class AdaptiveRateLimiter extends Context.Tag("streaming-reader/AdaptiveRateLimiter")<
  AdaptiveRateLimiter,
  AdaptiveRateLimiterShape
>() {}
