import { assert, describe, it } from "@effect/vitest"
import {
  Chunk,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Ref,
  Scope,
  Stream,
  SubscriptionRef,
  TestClock
} from "effect"
import * as BackpressureControllerLive from "../../src/layers/BackpressureControllerLive.js"
import { AdaptiveMemoryManager } from "../../src/services/AdaptiveMemoryManager.js"
import { BackpressureController } from "../../src/services/BackpressureController.js"
import { MemoryMonitor } from "../../src/services/MemoryMonitor.js"

/** The inputs the fakes read, set by each test. */
class Knobs extends Context.Tag("test/BackpressureKnobs")<Knobs, {
  readonly inUse: Ref.Ref<number>
  readonly growth: Ref.Ref<number>
}>() {}

const KnobsLive = Layer.effect(Knobs, Effect.all({ inUse: Ref.make(0), growth: Ref.make(0) }))

const limit = 1000

const FakeMemoryManager = Layer.effect(
  AdaptiveMemoryManager,
  Effect.map(Knobs, (knobs) =>
    AdaptiveMemoryManager.of({
      limit,
      effectiveLimit: Effect.succeed(limit),
      reserve: () => Effect.dieMessage("not used by the controller"),
      unsafeTryReserve: () => undefined,
      inUse: Ref.get(knobs.inUse),
      unsafeInUse: () => Effect.runSync(Ref.get(knobs.inUse))
    }))
)

const FakeMemoryMonitor = Layer.effect(
  MemoryMonitor,
  Effect.map(Knobs, (knobs) => {
    const sample = Effect.succeed({ atMs: 0, rss: 0, heapUsed: 0, arrayBuffers: 0 })
    return MemoryMonitor.of({
      sample,
      latest: sample,
      peakRss: Effect.succeed(0),
      growthMbPerSec: Ref.get(knobs.growth)
    })
  })
)

/** The live controller over fake inputs, with the knobs that drive them; fresh for each test. */
const TestEnv = BackpressureControllerLive.layer({ maxStreams: 4, interval: "1 second", window: "10 seconds" }).pipe(
  Layer.provideMerge(Layer.merge(FakeMemoryManager, FakeMemoryMonitor)),
  Layer.provideMerge(KnobsLive)
)

const setAndRefresh = (knob: "inUse" | "growth", value: number) =>
  Effect.gen(function*() {
    const knobs = yield* Knobs
    const controller = yield* BackpressureController
    yield* Ref.set(knobs[knob], value)
    return yield* controller.refresh
  })

const current = Effect.flatMap(BackpressureController, (controller) => SubscriptionRef.get(controller.level))

describe("BackpressureControllerLive", () => {
  it.effect("is at none when every input is idle", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* current, "none")
      assert.strictEqual(yield* Effect.flatMap(BackpressureController, (c) => c.refresh), "none")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("memory budget use raises the level and it falls back when the budget frees", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* setAndRefresh("inUse", 499), "none")
      assert.strictEqual(yield* setAndRefresh("inUse", 500), "low")
      assert.strictEqual(yield* setAndRefresh("inUse", 750), "high")
      assert.strictEqual(yield* setAndRefresh("inUse", 950), "critical")
      assert.strictEqual(yield* current, "critical")
      assert.strictEqual(yield* setAndRefresh("inUse", 100), "none")
      assert.strictEqual(yield* current, "none")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("memory growth raises the level and it falls back when growth stops", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* setAndRefresh("growth", 5), "low")
      assert.strictEqual(yield* setAndRefresh("growth", 20), "high")
      assert.strictEqual(yield* setAndRefresh("growth", 50), "critical")
      assert.strictEqual(yield* setAndRefresh("growth", 0), "none")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("active streams raise the level as they start and lower it as they end", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      const scopes = yield* Effect.forEach([1, 2, 3, 4], () => Scope.make())
      const levels: Array<string> = []
      for (const scope of scopes) {
        yield* controller.trackStream.pipe(Scope.extend(scope))
        levels.push(yield* current)
      }
      assert.deepStrictEqual(levels, ["none", "none", "low", "high"])
      yield* Scope.close(scopes[3]!, Exit.void)
      assert.strictEqual(yield* current, "low")
      yield* Scope.close(scopes[2]!, Exit.void)
      assert.strictEqual(yield* current, "none")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a consumer much slower than the reads raises the level to low, never higher; a fast one lowers it", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      const report = (readMs: number, waitMs: number, times: number) =>
        Effect.repeatN(controller.reportConsumer({ readMs, waitMs }), times - 1)
      yield* report(2, 40, 3)
      assert.strictEqual(yield* controller.refresh, "none", "too few reports to judge")
      yield* report(2, 40, 1)
      assert.strictEqual(yield* controller.refresh, "low")
      yield* report(2, 10_000, 32)
      assert.strictEqual(yield* controller.refresh, "low")
      yield* report(5, 1, 32)
      assert.strictEqual(yield* controller.refresh, "none")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a read served from cache does not make an ordinary wait look like lag", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      yield* Effect.repeatN(controller.reportConsumer({ readMs: 0.01, waitMs: 2 }), 9)
      assert.strictEqual(yield* controller.refresh, "none")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("consumer reports older than the window are forgotten", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      yield* Effect.repeatN(controller.reportConsumer({ readMs: 1, waitMs: 100 }), 9)
      assert.strictEqual(yield* controller.refresh, "low")
      yield* TestClock.adjust("11 seconds")
      assert.strictEqual(yield* current, "none", "the periodic refresh dropped the old reports")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("recomputes on its schedule without an explicit refresh", () =>
    Effect.gen(function*() {
      const knobs = yield* Knobs
      yield* Ref.set(knobs.inUse, 960)
      assert.strictEqual(yield* current, "none")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* current, "critical")
      yield* Ref.set(knobs.inUse, 0)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* current, "none")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("the level is the worst of its factors", () =>
    Effect.gen(function*() {
      yield* setAndRefresh("inUse", 600)
      assert.strictEqual(yield* setAndRefresh("growth", 25), "high")
      assert.strictEqual(yield* setAndRefresh("growth", 0), "low")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("publishes each change once to subscribers", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      const seen = yield* controller.level.changes.pipe(Stream.take(4), Stream.runCollect, Effect.fork)
      yield* Effect.repeatN(Effect.yieldNow(), 10)
      yield* setAndRefresh("inUse", 800)
      yield* setAndRefresh("inUse", 800)
      yield* setAndRefresh("inUse", 900)
      yield* setAndRefresh("inUse", 960)
      yield* setAndRefresh("inUse", 0)
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Fiber.join(seen)), ["none", "high", "critical", "none"])
    }).pipe(Effect.provide(TestEnv)))

  it.effect("current is the latest published level, not a recomputation", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      const knobs = yield* Knobs
      yield* Ref.set(knobs.inUse, 800)
      assert.strictEqual(yield* controller.current, "none", "no refresh yet")
      yield* controller.refresh
      assert.strictEqual(yield* controller.current, "high")
      assert.strictEqual(yield* current, "high")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a new read waits while the level is high and starts as soon as it drops", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      const knobs = yield* Knobs
      assert.strictEqual(yield* setAndRefresh("inUse", 800), "high")
      const scope = yield* Scope.make()
      const starting = yield* Effect.fork(Scope.extend(controller.trackStream, scope))
      yield* TestClock.adjust("900 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(starting)), "held back while high")
      yield* Ref.set(knobs.inUse, 100)
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(starting)
      assert.strictEqual(yield* current, "none")
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a new read waits at most admissionWait while the level stays critical, then starts and counts", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      assert.strictEqual(yield* setAndRefresh("inUse", 990), "critical")
      const scope = yield* Scope.make()
      const starting = yield* Effect.fork(Scope.extend(controller.trackStream, scope))
      yield* TestClock.adjust(
        BackpressureControllerLive.defaultAdmissionWait.pipe(Duration.subtract(Duration.millis(1)))
      )
      assert.isTrue(Option.isNone(yield* Fiber.poll(starting)))
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(starting)
      const scopes = yield* Effect.forEach([1, 2, 3], () => Scope.make())
      yield* setAndRefresh("inUse", 0)
      for (const each of scopes) yield* Scope.extend(controller.trackStream, each)
      assert.strictEqual(yield* current, "high", "the read that waited counts: 4 of 4 streams")
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("reads are admitted at once at none and low", () =>
    Effect.gen(function*() {
      const controller = yield* BackpressureController
      assert.strictEqual(yield* setAndRefresh("inUse", 600), "low")
      yield* Effect.scoped(controller.trackStream)
      assert.strictEqual(yield* setAndRefresh("inUse", 0), "none")
      yield* Effect.scoped(controller.trackStream)
    }).pipe(Effect.provide(TestEnv)))

  it("classify takes the thresholds of its doc comment", () => {
    const idle = { budgetUse: 0, growthMbPerSec: 0, activeStreams: 0, maxStreams: 64, consumerLag: undefined }
    assert.strictEqual(BackpressureControllerLive.classify(idle), "none")
    assert.strictEqual(BackpressureControllerLive.classify({ ...idle, budgetUse: 0.95 }), "critical")
    assert.strictEqual(BackpressureControllerLive.classify({ ...idle, activeStreams: 48 }), "low")
    assert.strictEqual(BackpressureControllerLive.classify({ ...idle, activeStreams: 640 }), "high")
    assert.strictEqual(BackpressureControllerLive.classify({ ...idle, consumerLag: 4 }), "low")
    assert.strictEqual(BackpressureControllerLive.classify({ ...idle, consumerLag: 1000 }), "low")
  })
})
