import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc, Fiber, Layer, Option, TestClock } from "effect"
import * as AdaptiveMemoryManagerLive from "../../src/layers/AdaptiveMemoryManagerLive.js"
import { AdaptiveMemoryManager } from "../../src/services/AdaptiveMemoryManager.js"
import { MemoryMonitor } from "../../src/services/MemoryMonitor.js"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import { fakeMonitor, StillMonitor } from "../support/pressure.js"

/** The live budget over a monitor that sees no growth. */
const budget = (options: AdaptiveMemoryManagerLive.AdaptiveMemoryManagerOptions) =>
  AdaptiveMemoryManagerLive.make(options).pipe(Effect.provideService(MemoryMonitor, fakeMonitor()))

/** Lets forked fibers run until they block. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

/** Whether a fiber has finished, without waiting for it. */
const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

describe("AdaptiveMemoryManagerLive", () => {
  it.scoped("100 concurrent streams with a slow (yielding) consumer never exceed the limit and all complete", () =>
    Effect.gen(function*() {
      const limit = 1 * MiB
      const manager = yield* budget({ limit })
      const chunksPerStream = 10
      let held = 0
      let maxHeld = 0
      let maxInUse = 0
      let completed = 0
      const stream = (id: number) =>
        Effect.forEach(Array.from({ length: chunksPerStream }, (_, chunk) => chunk), (chunk) =>
          Effect.gen(function*() {
            const ask = 16 * KiB + ((id * 7919 + chunk * 104729) % (48 * KiB))
            const reservation = yield* manager.reserve(ask)
            assert.strictEqual(reservation.bytes, ask)
            held += reservation.bytes
            maxHeld = Math.max(maxHeld, held)
            maxInUse = Math.max(maxInUse, yield* manager.inUse)
            yield* Effect.repeatN(Effect.yieldNow(), (id * 31 + chunk * 17) % 20)
            held -= reservation.bytes
            yield* reservation.release
            completed++
          }), { discard: true })
      yield* Effect.forEach(Array.from({ length: 100 }, (_, id) => id), stream, {
        concurrency: "unbounded",
        discard: true
      })
      assert.strictEqual(completed, 100 * chunksPerStream)
      assert.isAtMost(maxHeld, limit)
      assert.isAtMost(maxInUse, limit)
      assert.isAbove(maxHeld, limit * 0.75, "the streams contended for the budget")
      assert.strictEqual(yield* manager.inUse, 0)
    }))

  it.scoped("shrinks an ask above the limit to the limit instead of deadlocking", () =>
    Effect.gen(function*() {
      const manager = yield* budget({ limit: 1000 })
      const whole = yield* manager.reserve(5000)
      assert.strictEqual(whole.bytes, 1000)
      assert.strictEqual(yield* manager.inUse, 1000)
      yield* whole.release
      const small = yield* manager.reserve(1)
      const oversized = yield* Effect.fork(manager.reserve(1_000_000))
      yield* settle
      assert.isFalse(yield* isDone(oversized), "waits until the whole budget is free")
      yield* small.release
      const granted = yield* Fiber.join(oversized)
      assert.strictEqual(granted.bytes, 1000)
      assert.strictEqual(yield* manager.inUse, 1000)
    }))

  it.scoped("an interrupted waiter gets nothing and leaves the budget unchanged", () =>
    Effect.gen(function*() {
      const manager = yield* budget({ limit: 100 })
      const held = yield* manager.reserve(80)
      const waiter = yield* Effect.fork(manager.reserve(50))
      yield* settle
      assert.isFalse(yield* isDone(waiter))
      const exit = yield* Fiber.interrupt(waiter)
      assert.isTrue(Exit.isInterrupted(exit))
      assert.strictEqual(yield* manager.inUse, 80)
      yield* held.release
      assert.strictEqual(yield* manager.inUse, 0)
      const whole = yield* manager.reserve(100)
      assert.strictEqual(whole.bytes, 100)
    }))

  it.scoped("interrupting a waiter as it is granted leaks nothing", () =>
    Effect.gen(function*() {
      const manager = yield* budget({ limit: 100 })
      const held = yield* manager.reserve(80)
      const waiter = yield* Effect.fork(manager.reserve(50))
      yield* settle
      yield* held.release
      const exit = yield* Fiber.interrupt(waiter)
      if (Exit.isSuccess(exit)) yield* exit.value.release
      assert.strictEqual(yield* manager.inUse, 0)
    }))

  it.scoped("grants waiters first come, first served", () =>
    Effect.gen(function*() {
      const manager = yield* budget({ limit: 100 })
      const held = yield* manager.reserve(80)
      const large = yield* Effect.fork(manager.reserve(50))
      yield* settle
      const small = yield* Effect.fork(manager.reserve(10))
      yield* settle
      assert.isFalse(yield* isDone(small), "a small ask does not overtake a waiting large one")
      yield* held.release
      assert.strictEqual((yield* Fiber.join(large)).bytes, 50)
      assert.strictEqual((yield* Fiber.join(small)).bytes, 10)
      assert.strictEqual(yield* manager.inUse, 60)
    }))

  it.scoped("removing an interrupted head waiter lets the next one in", () =>
    Effect.gen(function*() {
      const manager = yield* budget({ limit: 100 })
      yield* manager.reserve(80)
      const large = yield* Effect.fork(manager.reserve(50))
      yield* settle
      const small = yield* Effect.fork(manager.reserve(10))
      yield* settle
      yield* Fiber.interrupt(large)
      yield* settle
      assert.isTrue(yield* isDone(small))
      assert.strictEqual((yield* Fiber.join(small)).bytes, 10)
      assert.strictEqual(yield* manager.inUse, 90)
    }))

  it.scoped("release is idempotent", () =>
    Effect.gen(function*() {
      const manager = yield* budget({ limit: 100 })
      const first = yield* manager.reserve(30)
      yield* manager.reserve(30)
      yield* first.release
      yield* first.release
      assert.strictEqual(yield* manager.inUse, 30)
    }))

  it.scoped("an ask of zero bytes or less is granted zero at once", () =>
    Effect.gen(function*() {
      const manager = yield* budget({ limit: 100 })
      yield* manager.reserve(100)
      assert.strictEqual((yield* manager.reserve(0)).bytes, 0)
      assert.strictEqual((yield* manager.reserve(-5)).bytes, 0)
      assert.strictEqual(yield* manager.inUse, 100)
    }))

  it.scoped("rejects a limit that is not a positive integer as a defect", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(budget({ limit: 0 }))
      assert.isTrue(Exit.isFailure(exit) && Exit.isFailure(exit) && !Exit.isInterrupted(exit))
    }))

  it.scoped("the layer defaults to a 50 MiB budget", () =>
    Effect.gen(function*() {
      const manager = yield* AdaptiveMemoryManager
      assert.strictEqual(manager.limit, 50 * MiB)
      assert.strictEqual((yield* manager.reserve(64 * MiB)).bytes, 50 * MiB)
    }).pipe(Effect.provide(AdaptiveMemoryManagerLive.layer().pipe(Layer.provide(StillMonitor)))))

  it("tightenedLimit keeps the whole limit up to the allowance, then shrinks it with growth down to its floor", () => {
    const at = (growth: number) => AdaptiveMemoryManagerLive.tightenedLimit(1000, growth, 5, 0.25)
    assert.deepStrictEqual([at(-3), at(0), at(5), at(10), at(20), at(200), at(Number.NaN)], [
      1000,
      1000,
      1000,
      500,
      250,
      250,
      1000
    ])
  })

  it.scoped("fast RSS growth tightens the budget in force: a reservation that fitted now waits; the hard limit stays", () =>
    Effect.gen(function*() {
      const growth = { mbPerSec: 0 }
      const manager = yield* AdaptiveMemoryManagerLive.make({ limit: 1000, interval: "500 millis" }).pipe(
        Effect.provideService(MemoryMonitor, fakeMonitor(growth))
      )
      const held = yield* manager.reserve(400)
      const before = yield* manager.reserve(200)
      yield* before.release
      growth.mbPerSec = 10
      yield* TestClock.adjust("500 millis")
      assert.strictEqual(yield* manager.effectiveLimit, 500)
      assert.strictEqual(manager.limit, 1000)
      const waiter = yield* Effect.fork(manager.reserve(200))
      yield* settle
      assert.isFalse(yield* isDone(waiter), "400 + 200 exceeds the tightened 500")
      yield* held.release
      assert.strictEqual((yield* Fiber.join(waiter)).bytes, 200)
    }))

  it.scoped("growth that eases loosens the budget and lets waiters in without any release", () =>
    Effect.gen(function*() {
      const growth = { mbPerSec: 20 }
      const manager = yield* AdaptiveMemoryManagerLive.make({ limit: 1000, interval: "500 millis" }).pipe(
        Effect.provideService(MemoryMonitor, fakeMonitor(growth))
      )
      assert.strictEqual(yield* manager.effectiveLimit, 250, "read at once when the budget is made")
      yield* manager.reserve(200)
      const waiter = yield* Effect.fork(manager.reserve(100))
      yield* settle
      assert.isFalse(yield* isDone(waiter))
      growth.mbPerSec = 0
      yield* TestClock.adjust("499 millis")
      assert.isFalse(yield* isDone(waiter), "the monitor is read every 500 ms")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual((yield* Fiber.join(waiter)).bytes, 100)
      assert.strictEqual(yield* manager.effectiveLimit, 1000)
    }))

  it.scoped("an ask above the tightened budget is granted once nothing else is reserved, never above the hard limit", () =>
    Effect.gen(function*() {
      const manager = yield* AdaptiveMemoryManagerLive.make({ limit: 1000 }).pipe(
        Effect.provideService(MemoryMonitor, fakeMonitor({ mbPerSec: 50 }))
      )
      assert.strictEqual(yield* manager.effectiveLimit, 250)
      const large = yield* manager.reserve(600)
      assert.strictEqual(large.bytes, 600)
      const next = yield* Effect.fork(manager.reserve(1))
      yield* settle
      assert.isFalse(yield* isDone(next))
      yield* large.release
      yield* (yield* Fiber.join(next)).release
      assert.strictEqual((yield* manager.reserve(5000)).bytes, 1000)
    }))

  it.effect.prop(
    "for any sizes, orders and interruptions, inUse stays within the limit and returns to 0",
    {
      limit: fc.integer({ min: 1, max: 1000 }),
      asks: fc.array(
        fc.record({
          bytes: fc.integer({ min: -10, max: 2500 }),
          before: fc.nat({ max: 5 }),
          hold: fc.nat({ max: 5 }),
          interruptAfter: fc.option(fc.nat({ max: 8 }), { nil: undefined })
        }),
        { minLength: 1, maxLength: 40 }
      )
    },
    ({ asks, limit }) =>
      Effect.gen(function*() {
        const manager = yield* budget({ limit })
        let held = 0
        let maxHeld = 0
        let maxInUse = 0
        const task = (ask: typeof asks[number]) =>
          Effect.gen(function*() {
            yield* Effect.repeatN(Effect.yieldNow(), ask.before)
            yield* Effect.acquireUseRelease(
              manager.reserve(ask.bytes),
              (reservation) =>
                Effect.gen(function*() {
                  assert.strictEqual(reservation.bytes, Math.max(0, Math.min(ask.bytes, limit)))
                  held += reservation.bytes
                  maxHeld = Math.max(maxHeld, held)
                  maxInUse = Math.max(maxInUse, yield* manager.inUse)
                  yield* Effect.repeatN(Effect.yieldNow(), ask.hold)
                }).pipe(Effect.ensuring(Effect.sync(() => held -= reservation.bytes))),
              (reservation) => reservation.release
            )
          })
        const fibers = yield* Effect.forEach(asks, (ask) => Effect.fork(task(ask)))
        yield* Effect.forEach(asks, (ask, i) =>
          ask.interruptAfter === undefined
            ? Effect.void
            : Effect.fork(
              Effect.zipRight(Effect.repeatN(Effect.yieldNow(), ask.interruptAfter), Fiber.interrupt(fibers[i]!))
            ))
        yield* Effect.forEach(fibers, Fiber.await)
        assert.isAtMost(maxHeld, limit)
        assert.isAtMost(maxInUse, limit)
        assert.strictEqual(held, 0)
        assert.strictEqual(yield* manager.inUse, 0)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 100 } }
  )
})
