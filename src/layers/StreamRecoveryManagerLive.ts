/**
 * StreamRecoveryManagerLive: classifies source failures and paces retries with an exponential,
 * jittered, capped `Schedule` whose count starts again whenever the read makes progress.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type { SourceError } from "../services/ByteSource.js"
import { isRetryableStatus } from "./sources/HttpSource.js"
import { RetriesExhausted, StreamRecoveryManager } from "../services/StreamRecoveryManager.js"
import type { ErrorClass, RetryPolicy, StreamRecoveryManagerShape } from "../services/StreamRecoveryManager.js"

/** First backoff delay; each further failure without progress doubles it. */
export const baseDelay = Duration.millis(100)

/** Growth factor of the backoff. */
export const backoffFactor = 2

/** Whether a failure is worth another attempt: transient reads, stalls and 408 / 429 / 5xx answers are; the rest is not. */
export const classify = (error: SourceError): ErrorClass => {
  switch (error._tag) {
    case "TransientReadError":
    case "SourceStalled":
      return "retryable"
    case "HttpStatusError":
      return isRetryableStatus(error.status) ? "retryable" : "fatal"
    case "SourceNotFound":
    case "AccessDenied":
    case "NotAFile":
    case "InvalidUrl":
    case "RangeNotSupported":
    case "SourceChanged":
    case "NotResumable":
    case "BadRedirect":
    case "TlsFailure":
      return "fatal"
  }
}

/**
 * The backoff: `baseDelay * backoffFactor^n`, with equal jitter (each delay is uniformly drawn from
 * its upper half, using Effect's `Random`), rounded to whole milliseconds and capped at `maxDelay`.
 * It outputs the delay it waits.
 */
export const backoff = (maxDelay: Duration.DurationInput): Schedule.Schedule<Duration.Duration> => {
  const capMs = Math.round(Duration.toMillis(maxDelay))
  return Schedule.exponential(baseDelay, backoffFactor).pipe(
    Schedule.jitteredWith({ min: 0.5, max: 1 }),
    Schedule.modifyDelay((_, delay) => Duration.millis(Math.min(Math.round(Duration.toMillis(delay)), capMs))),
    Schedule.delays
  )
}

/** The wait a `Retry-After` asks for beyond what the backoff already waited, bounded by `maxDelay`. */
const retryAfterExtra = (error: SourceError, waited: Duration.Duration, cap: Duration.Duration): Duration.Duration => {
  if (error._tag !== "HttpStatusError" || error.retryAfterMs === undefined) return Duration.zero
  const wanted = Duration.min(Duration.millis(Math.max(0, error.retryAfterMs)), cap)
  return Duration.greaterThan(wanted, waited) ? Duration.subtract(wanted, waited) : Duration.zero
}

/**
 * Builds the recovery manager. A policy allows `retries` failed attempts in a row without progress;
 * the next one fails with `RetriesExhausted` whose `attempts` counts that run of failures
 * (`retries + 1`). `retries` on the policy counts every failure reported over the read. A
 * `Retry-After` is honoured when longer than the backoff, but never beyond `maxDelay`.
 */
export const make: Effect.Effect<StreamRecoveryManagerShape> = Effect.sync(() =>
  StreamRecoveryManager.of({
    classify,
    policy: Effect.fn("StreamRecoveryManager.policy")(function*(options: {
      readonly source: string
      readonly retries: number
      readonly maxDelay: Duration.DurationInput
    }) {
      const cap = Duration.decode(options.maxDelay)
      const driver = yield* Schedule.driver(backoff(cap))
      const consecutive = yield* Ref.make(0)
      const total = yield* Ref.make(0)

      const onFailure = Effect.fn("RetryPolicy.onFailure")(function*(error: SourceError, checkpointOffset: number) {
        yield* Ref.update(total, (n) => n + 1)
        if (classify(error) === "fatal") return yield* Effect.fail(error)
        const failuresBefore = yield* Ref.getAndUpdate(consecutive, (n) => n + 1)
        if (failuresBefore >= options.retries) {
          return yield* new RetriesExhausted({
            source: options.source,
            attempts: failuresBefore + 1,
            lastError: error.message,
            checkpointOffset
          })
        }
        const waited = yield* driver.next(undefined).pipe(Effect.orElseSucceed(() => cap))
        const extra = retryAfterExtra(error, waited, cap)
        if (Duration.greaterThan(extra, Duration.zero)) yield* Effect.sleep(extra)
      })

      const onProgress = Ref.getAndSet(consecutive, 0).pipe(
        Effect.flatMap((failures) => failures > 0 ? driver.reset : Effect.void)
      )

      return {
        onFailure,
        onProgress,
        retries: Ref.get(total)
      } satisfies RetryPolicy
    })
  })
)

/** The recovery manager. */
export const layer: Layer.Layer<StreamRecoveryManager> = Layer.effect(StreamRecoveryManager, make)
