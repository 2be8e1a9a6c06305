/**
 * The plain implementations of the reader's parts: a fixed chunk size, no memory budget, no
 * rate limit, no pressure, no retries, no checkpoints. The basic stack is made of these, and
 * each feature flag of the enhanced stack falls back to one of them.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AdaptiveChunkSizer } from "../services/AdaptiveChunkSizer.js"
import { AdaptiveMemoryManager } from "../services/AdaptiveMemoryManager.js"
import { AdaptiveRateLimiter } from "../services/AdaptiveRateLimiter.js"
import { BackpressureController } from "../services/BackpressureController.js"
import type { PressureLevel } from "../services/BackpressureController.js"
import { CheckpointStore } from "../services/CheckpointStore.js"
import { StreamRecoveryManager } from "../services/StreamRecoveryManager.js"

/** Every read uses its initial chunk size throughout. */
export const FixedChunkSizer: Layer.Layer<AdaptiveChunkSizer> = Layer.succeed(
  AdaptiveChunkSizer,
  AdaptiveChunkSizer.of({
    make: ({ initial }) => Effect.succeed({ next: Effect.succeed(initial), observe: () => Effect.void })
  })
)

/** Every reservation is granted at once; nothing is counted. */
export const UnboundedMemory: Layer.Layer<AdaptiveMemoryManager> = Layer.succeed(
  AdaptiveMemoryManager,
  AdaptiveMemoryManager.of({
    limit: Number.POSITIVE_INFINITY,
    effectiveLimit: Effect.succeed(Number.POSITIVE_INFINITY),
    reserve: (bytes) => Effect.succeed({ bytes, release: Effect.void }),
    unsafeTryReserve: (bytes) => ({ bytes, release: Effect.void }),
    inUse: Effect.succeed(0),
    unsafeInUse: () => 0
  })
)

/** Reads are never paced. */
export const NoRateLimit: Layer.Layer<AdaptiveRateLimiter> = Layer.succeed(
  AdaptiveRateLimiter,
  AdaptiveRateLimiter.of({ forStream: () => Effect.succeed({ limited: false, take: Effect.succeed }) })
)

/** The pressure level is always `none`. */
export const NoPressure: Layer.Layer<BackpressureController> = Layer.effect(
  BackpressureController,
  Effect.map(SubscriptionRef.make<PressureLevel>("none"), (level) =>
    BackpressureController.of({
      level,
      current: Effect.succeed("none"),
      trackStream: Effect.void,
      reportConsumer: () => Effect.void,
      refresh: Effect.succeed("none")
    }))
)

/** Every failure ends the read at once. */
export const NoRetries: Layer.Layer<StreamRecoveryManager> = Layer.succeed(
  StreamRecoveryManager,
  StreamRecoveryManager.of({
    classify: () => "fatal",
    policy: () =>
      Effect.succeed({
        onFailure: (error) => Effect.fail(error),
        onProgress: Effect.void,
        retries: Effect.succeed(0)
      })
  })
)

/** Nothing is saved and nothing is found. */
export const NoCheckpoints: Layer.Layer<CheckpointStore> = Layer.succeed(
  CheckpointStore,
  CheckpointStore.of({
    save: () => Effect.void,
    load: () => Effect.succeed(Option.none()),
    delete: () => Effect.void
  })
)
