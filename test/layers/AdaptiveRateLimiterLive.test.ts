import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc, Fiber, Layer, Option, SubscriptionRef, TestClock } from "effect"
import * as AdaptiveRateLimiterLive from "../../src/layers/AdaptiveRateLimiterLive.js"
import { AdaptiveRateLimiter } from "../../src/services/AdaptiveRateLimiter.js"
import type { StreamRateLimiter } from "../../src/services/AdaptiveRateLimiter.js"
import { BackpressureController, pressureLevels } from "../../src/services/BackpressureController.js"
import type { PressureLevel } from "../../src/services/BackpressureController.js"
import { GiB, KiB, MiB } from "../../src/services/ReadOptions.js"
import { FakeController } from "../support/pressure.js"

const TestEnv = AdaptiveRateLimiterLive.layer().pipe(Layer.provideMerge(FakeController))

const withGlobalRate = (globalRate: number) =>
  AdaptiveRateLimiterLive.layer({ globalRate }).pipe(Layer.provideMerge(FakeController))

const setPressure = (level: PressureLevel) =>
  Effect.flatMap(BackpressureController, (controller) => SubscriptionRef.set(controller.level, level))

const forStream = (cap?: number) => Effect.flatMap(AdaptiveRateLimiter, (limiter) => limiter.forStream(cap))

/** Takes `chunk` bytes again and again in a fiber, counting the bytes granted and the largest grant. */
const pump = (limiter: StreamRateLimiter, chunk: number) =>
  Effect.gen(function*() {
    const counter = { bytes: 0, takes: 0, largest: 0 }
    const fiber = yield* Effect.fork(
      Effect.forever(Effect.flatMap(limiter.take(chunk), (granted) =>
        Effect.sync(() => {
          counter.bytes += granted
          counter.takes++
          counter.largest = Math.max(counter.largest, granted)
        })))
    )
    yield* settle
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
      assert.strictEqual(counter.largest, 64 * KiB, "a chunk within a quarter second of the rate is granted whole")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a rate below the chunk size grants parts of it, a quarter second of the rate each", () =>
    Effect.gen(function*() {
      const limiter = yield* forStream(64 * KiB)
      assert.strictEqual(yield* limiter.take(1 * MiB), 16 * KiB)
      const next = yield* Effect.fork(limiter.take(1 * MiB))
      yield* settle
      assert.isFalse(yield* isDone(next), "the burst is spent: the next grant waits for its time")
      yield* TestClock.adjust("249 millis")
      assert.isFalse(yield* isDone(next))
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Fiber.join(next), 16 * KiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("8 KiB/s delivers at 8 KiB/s from the start: no burst of a whole chunk", () =>
    Effect.gen(function*() {
      const { counter, fiber } = yield* pump(yield* forStream(8 * KiB), 256 * KiB)
      assert.strictEqual(counter.bytes, 4 * KiB, "the first burst is 4 KiB")
      const samples: Array<number> = []
      for (let second = 1; second <= 5; second++) {
        yield* TestClock.adjust("1 second")
        samples.push(counter.bytes)
      }
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(counter.largest, 2 * KiB, "each grant is a quarter second of the rate")
      samples.forEach((bytes, i) => assert.strictEqual(bytes, 4 * KiB + (i + 1) * 8 * KiB, `after ${i + 1} s`))
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

  it.effect("critical pressure quarters the rate and the grant", () =>
    Effect.gen(function*() {
      yield* setPressure("critical")
      const { counter, fiber } = yield* pump(yield* forStream(1 * MiB), 256 * KiB)
      yield* TestClock.adjust("5 seconds")
      const warm = counter.bytes
      yield* TestClock.adjust("30 seconds")
      yield* Fiber.interrupt(fiber)
      assertRate(counter.bytes - warm, 30, 0.25 * MiB)
      assert.strictEqual(counter.largest, 64 * KiB, "a quarter second of 256 KiB/s")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("without a cap or a global rate nothing waits and every take is granted whole, whatever the pressure", () =>
    Effect.gen(function*() {
      yield* setPressure("critical")
      const limiter = yield* forStream()
      const fiber = yield* Effect.fork(Effect.forEach(Array.from({ length: 10 }), () => limiter.take(1 * GiB)))
      yield* settle
      assert.deepStrictEqual(yield* Fiber.join(fiber), Array.from({ length: 10 }, () => 1 * GiB))
      assert.strictEqual(yield* TestClock.currentTimeMillis, 0)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a capped take beyond the burst waits (the control for the test above)", () =>
    Effect.gen(function*() {
      const limiter = yield* forStream(1 * MiB)
      const fiber = yield* Effect.fork(Effect.repeatN(limiter.take(1 * MiB), 2))
      yield* settle
      assert.isFalse(yield* isDone(fiber))
      yield* TestClock.adjust("1 second")
      assert.isTrue(yield* isDone(fiber))
    }).pipe(Effect.provide(TestEnv)))

  it.effect("takes are served in the order they arrive", () =>
    Effect.gen(function*() {
      const limiter = yield* forStream(16 * KiB)
      yield* limiter.take(16 * KiB)
      const order: Array<string> = []
      const fibers = yield* Effect.forEach(["a", "b", "c"], (name) =>
        Effect.fork(Effect.zipRight(limiter.take(64 * KiB), Effect.sync(() => order.push(name)))))
      yield* settle
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("250 millis")
        yield* settle
        assert.strictEqual(order.length, i + 1, `one grant of 4 KiB per 250 ms (${order})`)
      }
      yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(order, ["a", "b", "c"])
    }).pipe(Effect.provide(TestEnv)))

  it.effect.prop(
    "a take grants between 1 byte and what it asked, and no more than a quarter second of the rate",
    {
      rate: fc.integer({ min: 1, max: 64 * MiB }),
      asks: fc.array(fc.integer({ min: 1, max: 64 * MiB }), { minLength: 1, maxLength: 6 }),
      pressure: fc.constantFrom(...pressureLevels)
    },
    ({ asks, pressure, rate }) =>
      Effect.gen(function*() {
        yield* setPressure(pressure)
        const limiter = yield* forStream(rate)
        const quantum = Math.max(1, Math.floor(rate * AdaptiveRateLimiterLive.pressureFactor(pressure) / 4))
        for (const ask of asks) {
          const fiber = yield* Effect.fork(limiter.take(ask))
          yield* TestClock.adjust("1 hour")
          const granted = yield* Fiber.join(fiber)
          assert.isAtLeast(granted, 1)
          assert.isAtMost(granted, Math.min(ask, quantum))
          assert.strictEqual(granted, Math.min(ask, quantum))
        }
      }).pipe(Effect.provide(TestEnv)),
    { fastCheck: { numRuns: 50 } }
  )

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

  it.effect("a global rate below the chunk size grants parts of chunks too", () =>
    Effect.gen(function*() {
      const { counter, fiber } = yield* pump(yield* forStream(), 256 * KiB)
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(counter.largest, 8 * KiB, "a quarter second of 32 KiB/s")
      assertRate(counter.bytes, 10, 32 * KiB)
    }).pipe(Effect.provide(withGlobalRate(32 * KiB))))

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
      assert.strictEqual(yield* limiter.take(256 * KiB), 256 * KiB, "the burst")
      const waiting = yield* Effect.fork(limiter.take(256 * KiB))
      yield* settle
      assert.isFalse(yield* isDone(waiting))
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(waiting)))
      const next = yield* Effect.fork(limiter.take(128 * KiB))
      yield* settle
      yield* TestClock.adjust("125 millis")
      assert.isTrue(yield* isDone(next), "waits for its own bytes only, not the abandoned ones")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("rejects a rate that is not positive as a defect", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(forStream(0))
      assert.isTrue(Exit.isFailure(exit) && !Exit.isInterrupted(exit))
    }).pipe(Effect.provide(TestEnv)))
})
