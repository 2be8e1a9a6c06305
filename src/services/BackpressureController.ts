/**
 * BackpressureController: one pressure level from memory, concurrency and throughput, which
 * the reader, the chunk sizer, the rate limiter and the cleanup manager act on:
 *
 * | level | what happens |
 * |---|---|
 * | none | nothing held back; the reader may read the next chunk ahead |
 * | low | no read-ahead (the reader forks one only at `none`) |
 * | high | chunk sizes halve at each chunk; rates halve; new reads wait (bounded) before they start |
 * | critical | the minimum chunk size; rates quarter; reusable memory is released (emergency cleanup, all reads, priority order); new reads wait |
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as SubscriptionRef from "effect/SubscriptionRef"

/** How hard the process is pressed. */
export type PressureLevel = "none" | "low" | "high" | "critical"

/** The pressure levels from lowest to highest. */
export const pressureLevels: ReadonlyArray<PressureLevel> = ["none", "low", "high", "critical"]

/** Computes and publishes the pressure level. */
export interface BackpressureControllerShape {
  /** The current level; subscribe to its `changes` to follow it. */
  readonly level: SubscriptionRef.SubscriptionRef<PressureLevel>
  /** The latest published level, read without recomputing it (cheap enough for every chunk). */
  readonly current: Effect.Effect<PressureLevel>
  /**
   * Counts a read as active for as long as the scope is open. While the level is `high` or
   * `critical` it first waits for the level to drop, for a bounded time, then starts anyway.
   */
  readonly trackStream: Effect.Effect<void, never, Scope.Scope>
  /** Reports how long the consumer took to ask for the next chunk versus how long the read took; cheap, once per chunk. */
  readonly reportConsumer: (observation: { readonly readMs: number; readonly waitMs: number }) => Effect.Effect<void>
  /** Recomputes the level from the latest inputs. */
  readonly refresh: Effect.Effect<PressureLevel>
}

/** Computes and publishes the pressure level. */
export class BackpressureController extends Context.Tag("streaming-reader/BackpressureController")<
  BackpressureController,
  BackpressureControllerShape
>() {}
