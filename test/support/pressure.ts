/**
 * Ways to put the reader's parts under pressure: a `BackpressureController` whose level the test
 * sets, memory readings and growth rates the test sets, and a share of the budget held by the test.
 */
import { Effect, Layer, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import { bytesPerMb } from "../../src/layers/MemoryMonitorLive.js"
import type { MemoryReading } from "../../src/layers/MemoryMonitorLive.js"
import { AdaptiveMemoryManager } from "../../src/services/AdaptiveMemoryManager.js"
import { BackpressureController } from "../../src/services/BackpressureController.js"
import type { PressureLevel } from "../../src/services/BackpressureController.js"
import { MemoryMonitor } from "../../src/services/MemoryMonitor.js"
import type { MemoryMonitorShape } from "../../src/services/MemoryMonitor.js"

/** A controller whose level the test sets (`SubscriptionRef.set(controller.level, ...)`). */
export const FakeController = Layer.effect(
  BackpressureController,
  Effect.map(SubscriptionRef.make<PressureLevel>("none"), (level) =>
    BackpressureController.of({
      level,
      current: SubscriptionRef.get(level),
      trackStream: Effect.void,
      reportConsumer: () => Effect.void,
      refresh: SubscriptionRef.get(level)
    }))
)

/** A reading of process memory for `MemoryMonitorLive` whose RSS the test sets; counts its calls. */
export const fakeMemory = (rss: number) => {
  const state = { rss, calls: 0 }
  const read = (): MemoryReading => {
    state.calls++
    return { rss: state.rss, heapUsed: state.rss / 2, arrayBuffers: 1024 }
  }
  return { state, read }
}

/** A reading whose RSS grows by `mbPerSec` MB per second of `Clock` time, sampled every `intervalMs`. */
export const growingMemory = (mbPerSec: number, intervalMs: number) => {
  const memory = fakeMemory(100 * bytesPerMb)
  const read = (): MemoryReading => {
    const reading = memory.read()
    memory.state.rss += mbPerSec * bytesPerMb * intervalMs / 1000
    return reading
  }
  return { state: memory.state, read }
}

/** A memory monitor that reports the growth rate held in `growth` (0 when not given). */
export const fakeMonitor = (growth: { mbPerSec: number } = { mbPerSec: 0 }): MemoryMonitorShape => {
  const sample = Effect.succeed({ atMs: 0, rss: 0, heapUsed: 0, arrayBuffers: 0 })
  return MemoryMonitor.of({
    sample,
    latest: sample,
    peakRss: Effect.succeed(0),
    growthMbPerSec: Effect.sync(() => growth.mbPerSec)
  })
}

/** A memory monitor that never sees RSS grow. */
export const StillMonitor: Layer.Layer<MemoryMonitor> = Layer.sync(MemoryMonitor, () => fakeMonitor())

/**
 * Holds `share` of the budget's hard limit for as long as the scope is open, and returns the level
 * the controller recomputes from it (at 75 % `high`, at 95 % `critical`).
 */
export const holdBudget = (
  share: number
): Effect.Effect<PressureLevel, never, AdaptiveMemoryManager | BackpressureController | Scope.Scope> =>
  Effect.gen(function*() {
    const memory = yield* AdaptiveMemoryManager
    const controller = yield* BackpressureController
    yield* Effect.acquireRelease(memory.reserve(Math.ceil(memory.limit * share)), (held) => held.release)
    return yield* controller.refresh
  })
