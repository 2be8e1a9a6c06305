/**
 * BackpressureController: one pressure level from memory, concurrency and throughput, which
 * the chunk sizer, the rate limiter and the cleanup manager follow.
 */
import { Context } from "effect"
import type { Effect, Scope, SubscriptionRef } from "effect"

/** How hard the process is pressed. */
export type PressureLevel = "none" | "low" | "high" | "critical"

/** The pressure levels from lowest to highest. */
export const pressureLevels: ReadonlyArray<PressureLevel> = ["none", "low", "high", "critical"]

/** Computes and publishes the pressure level. */
export interface BackpressureControllerShape {
  /** The current level; subscribe to its `changes` to follow it. */
  readonly level: SubscriptionRef.SubscriptionRef<PressureLevel>
  /** Counts a read as active for as long as the scope is open. */
  readonly trackStream: Effect.Effect<void, never, Scope.Scope>
  /** Reports how long the consumer took to ask for the next chunk versus how long the read took. */
  readonly reportConsumer: (observation: { readonly readMs: number; readonly waitMs: number }) => Effect.Effect<void>
  /** Recomputes the level from the latest inputs. */
  readonly refresh: Effect.Effect<PressureLevel>
}

/** Computes and publishes the pressure level. */
export class BackpressureController extends Context.Tag("streaming-reader/BackpressureController")<
  BackpressureController,
  BackpressureControllerShape
>() {}
