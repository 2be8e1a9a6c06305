import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, SubscriptionRef, TestClock } from "effect"
import * as AdaptiveRateLimiterLive from "../../src/layers/AdaptiveRateLimiterLive.js"
import { AdaptiveRateLimiter } from "../../src/services/AdaptiveRateLimiter.js"
import type { StreamRateLimiter } from "../../src/services/AdaptiveRateLimiter.js"
import { BackpressureController } from "../../src/services/BackpressureController.js"
import type { PressureLevel } from "../../src/services/BackpressureController.js"
import { GiB, KiB, MiB } from "../../src/services/ReadOptions.js"
import { FakeController } from "../support/pressure.js"


const TestEnv = AdaptiveRateLimiterLive.layer().pipe(Layer.provideMerge(FakeController))

const withGlobalRate = (globalRate: number) =>
  AdaptiveRateLimiterLive.layer({ globalRate }).pipe(Layer.provideMerge(FakeController))

const setPressure = (level: PressureLevel) =>
  Effect.flatMap(BackpressureController, (controller) => SubscriptionRef.set(controller.level, level))

const forStream = (cap?: number) => Effect.flatMap(AdaptiveRateLimiter, (limiter) => limiter.forStream(cap))

/** Takes `chunk` bytes again and again in a fiber, counting the bytes let through. */
const pump = (limiter: StreamRateLimiter, chunk: number) =>
  Effect.gen(function*() {
    const counter = { bytes: 0 }
    const fiber = yield* Effect.fork(
      Effect.forever(Effect.zipRight(limiter.take(chunk), Effect.sync(() => counter.bytes += chunk)))
    )
    return { counter, fiber }
  })

/** Lets forked fibers run until they block. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

const assertRate = (bytes: number, seconds: number, expected: number) => {
  const rate = bytes / seconds
  assert.isAtMost(Math.abs(rate - expected) / expected, 0.05, `rate ${rate} vs ${expected}`)
}

describe("AdaptiveRateLimiterLive", () => {
  it.effect("a 1 MiB/s cap holds 64 KiB takes to 1 MiB/s over a simulated minute", () =>
    Effect.gen(function*() {
      const { counter, fiber } = yield* pump(yield* forStream(1 * MiB), 64 * KiB)
      yield* TestClock.adjust("60 seconds")
      yield* Fiber.interrupt(fiber)
      assertRate(counter.bytes, 60, 1 * MiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("high pressure halves the rate and it recovers when pressure falls", () =>
    Effect.gen(function*() {
      yield* setPressure("high")
      const { counter, fiber } = yield* pump(yield* forStream(1 * MiB), 64 * KiB)
      yield* TestClock.adjust("2 seconds")
      const warm = counter.bytes
      yield* TestClock.adjust("20 seconds")
      assertRate(counter.bytes - warm, 20, 0.5 * MiB)
      yield* setPressure("none")
      const before = counter.bytes
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.interrupt(fiber)
      assertRate(counter.bytes - before, 10, 1 * MiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("critical pressure quarters the rate", () =>
    Effect.gen(function*() {
      yield* setPressure("critical")
      const { counter, fiber } = yield* pump(yield* forStream(1 * MiB), 64 * KiB)
      yield* TestClock.adjust("5 seconds")
      const warm = counter.bytes
      yield* TestClock.adjust("30 seconds")
      yield* Fiber.interrupt(fiber)
      assertRate(counter.bytes - warm, 30, 0.25 * MiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("without a cap or a global rate nothing waits, whatever the pressure", () =>
    Effect.gen(function*() {
      yield* setPressure("critical")
      const limiter = yield* forStream()
      const fiber = yield* Effect.fork(Effect.repeatN(limiter.take(1 * GiB), 9))
      yield* settle
      assert.isTrue(yield* isDone(fiber))
      assert.strictEqual(yield* TestClock.currentTimeMillis, 0)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a capped take beyond the burst waits (the control for the test above)", () =>
    Effect.gen(function*() {
      const limiter = yield* forStream(1 * MiB)
      const fiber = yield* Effect.fork(Effect.repeatN(limiter.take(1 * MiB), 2))
      yield* settle
      assert.isFalse(yield* isDone(fiber))
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(yield* isDone(fiber))
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a take larger than the burst passes after paying its time", () =>
    Effect.gen(function*() {
      const limiter = yield* forStream(64 * KiB)
      const fiber = yield* Effect.fork(limiter.take(1 * MiB))
      yield* TestClock.adjust("11900 millis")
      assert.isFalse(yield* isDone(fiber), "1 MiB minus a 256 KiB burst at 64 KiB/s takes 12 s")
      yield* TestClock.adjust("100 millis")
      assert.isTrue(yield* isDone(fiber))
    }).pipe(Effect.provide(TestEnv)))

  it.effect("the global rate is shared by all reads", () =>
    Effect.gen(function*() {
      const a = yield* pump(yield* forStream(), 64 * KiB)
      const b = yield* pump(yield* forStream(), 64 * KiB)
      yield* TestClock.adjust("2 seconds")
      const warmA = a.counter.bytes
      const warmB = b.counter.bytes
      yield* TestClock.adjust("15 seconds")
      yield* Fiber.interrupt(a.fiber)
      yield* Fiber.interrupt(b.fiber)
      const bytesA = a.counter.bytes - warmA
      const bytesB = b.counter.bytes - warmB
      assertRate(bytesA + bytesB, 15, 1 * MiB)
      assert.isAtMost(Math.abs(bytesA - bytesB), 2 * 64 * KiB, "both reads get their share")
    }).pipe(Effect.provide(withGlobalRate(1 * MiB))))

  it.effect("a read's cap below the global rate is the one that binds", () =>
    Effect.gen(function*() {
      const { counter, fiber } = yield* pump(yield* forStream(256 * KiB), 64 * KiB)
      yield* TestClock.adjust("2 seconds")
      const warm = counter.bytes
      yield* TestClock.adjust("20 seconds")
      yield* Fiber.interrupt(fiber)
      assertRate(counter.bytes - warm, 20, 256 * KiB)
    }).pipe(Effect.provide(withGlobalRate(1 * MiB))))

  it.effect("an interrupted take gives its bytes back", () =>
    Effect.gen(function*() {
      const limiter = yield* forStream(1 * MiB)
      yield* limiter.take(1 * MiB)
      const waiting = yield* Effect.fork(limiter.take(1 * MiB))
      yield* settle
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(waiting)))
      const next = yield* Effect.fork(limiter.take(512 * KiB))
      yield* TestClock.adjust("500 millis")
      assert.isTrue(yield* isDone(next), "waits for its own bytes only, not the abandoned ones")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("rejects a rate that is not positive as a defect", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(forStream(0))
      assert.isTrue(Exit.isFailure(exit) && !Exit.isInterrupted(exit))
    }).pipe(Effect.provide(TestEnv)))
})
