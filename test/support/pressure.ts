/**
 * A `BackpressureController` whose level the test sets through the service's own `level`.
 */
import { Effect, Layer, SubscriptionRef } from "effect"
import { BackpressureController } from "../../src/services/BackpressureController.js"
import type { PressureLevel } from "../../src/services/BackpressureController.js"

/** A controller whose level the test sets (`SubscriptionRef.set(controller.level, ...)`). */
export const FakeController = Layer.effect(
  BackpressureController,
  Effect.map(SubscriptionRef.make<PressureLevel>("none"), (level) =>
    BackpressureController.of({
      level,
      trackStream: Effect.void,
      reportConsumer: () => Effect.void,
      refresh: SubscriptionRef.get(level)
    }))
)
