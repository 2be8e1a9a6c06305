/**
 * StreamRecoveryManager: which failures are worth another attempt, and how long to wait.
 */
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type { SourceError } from "./ByteSource.js"

/** Every attempt allowed failed; the checkpoint at `checkpointOffset` is kept. */
export class RetriesExhausted extends Schema.TaggedError<RetriesExhausted>()("RetriesExhausted", {
  source: Schema.String,
  attempts: Schema.Number,
  lastError: Schema.String,
  checkpointOffset: Schema.Number
}) {
  override get message() {
    return `gave up on ${this.source} after ${this.attempts} attempts (last: ${this.lastError}); ` +
      `${this.checkpointOffset} bytes are checkpointed, run the same command again to resume`
  }
}

/** Whether a failure is worth another attempt. */
export type ErrorClass = "retryable" | "fatal"

/** Decides retries for one read: call `onFailure` after each failed attempt, `onProgress` after bytes arrive. */
export interface RetryPolicy {
  /** Waits before the next attempt, or fails with `RetriesExhausted` / the fatal error itself. */
  readonly onFailure: (
    error: SourceError,
    checkpointOffset: number
  ) => Effect.Effect<void, SourceError | RetriesExhausted>
  /** Forward progress was made: the attempt count starts again. */
  readonly onProgress: Effect.Effect<void>
  /** Attempts that failed so far, over the whole read. */
  readonly retries: Effect.Effect<number>
}

/** Classifies failures and paces retries. */
export interface StreamRecoveryManagerShape {
  /** Whether a failure is worth another attempt. */
  readonly classify: (error: SourceError) => ErrorClass
  /** A fresh retry policy for one read. */
  readonly policy: (options: {
    readonly source: string
    readonly retries: number
    readonly maxDelay: Duration.DurationInput
  }) => Effect.Effect<RetryPolicy>
}

/** Classifies failures and paces retries. */
export class StreamRecoveryManager extends Context.Tag("streaming-reader/StreamRecoveryManager")<
  StreamRecoveryManager,
  StreamRecoveryManagerShape
>() {}
