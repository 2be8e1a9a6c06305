import { assert, describe, it, layer } from "@effect/vitest"
import {
  Effect,
  Exit,
  Fiber,
  HashSet,
  Layer,
  Logger,
  Metric,
  Option,
  Ref,
  Scope,
  SubscriptionRef,
  TestClock
} from "effect"
import type { Duration } from "effect"
import * as ResourceCleanupManagerLive from "../../src/layers/ResourceCleanupManagerLive.js"
import { BackpressureController } from "../../src/services/BackpressureController.js"
import type { PressureLevel } from "../../src/services/BackpressureController.js"
import { CleanupFailed, ResourceCleanupManager } from "../../src/services/ResourceCleanupManager.js"

/** A log of which resources were released, in order. */
const makeLog = Ref.make<ReadonlyArray<string>>([])

const releaseInto = (log: Ref.Ref<ReadonlyArray<string>>, name: string) => Ref.update(log, (all) => [...all, name])

/** Registers `name` with `priority` in `scope`; its release appends `name` to `log`. */
const registerIn = (
  scope: Scope.Scope,
  log: Ref.Ref<ReadonlyArray<string>>,
  name: string,
  priority: number,
  options: {
    readonly emergency?: boolean
    readonly timeout?: Duration.DurationInput
    readonly release?: Effect.Effect<void, unknown>
  } = {}
) =>
  ResourceCleanupManager.pipe(
    Effect.flatMap((manager) =>
      manager.register({
        name,
        priority,
        release: options.release ?? releaseInto(log, name),
        ...(options.emergency === undefined ? {} : { emergency: options.emergency }),
        ...(options.timeout === undefined ? {} : { timeout: options.timeout })
      })
    ),
    Scope.extend(scope)
  )

/** The failures recorded since `before` failures were known. */
const failuresSince = (before: number) =>
  ResourceCleanupManager.pipe(Effect.flatMap((manager) => manager.failures), Effect.map((all) => all.slice(before)))

const failureCount = ResourceCleanupManager.pipe(
  Effect.flatMap((manager) => manager.failures),
  Effect.map((all) => all.length)
)

describe("ResourceCleanupManagerLive", () => {
  layer(ResourceCleanupManagerLive.layer)((it) => {
    it.effect("releases by priority, higher first, then last registered first", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const scope = yield* Scope.make()
        yield* registerIn(scope, log, "p1-first", 1)
        yield* registerIn(scope, log, "p3-first", 3)
        yield* registerIn(scope, log, "p2", 2)
        yield* registerIn(scope, log, "p3-second", 3)
        yield* registerIn(scope, log, "p1-second", 1)
        assert.deepStrictEqual(yield* Ref.get(log), [])
        yield* Scope.close(scope, Exit.void)
        assert.deepStrictEqual(yield* Ref.get(log), ["p3-second", "p3-first", "p2", "p1-second", "p1-first"])
      }))

    it.effect("equal priorities are released in reverse registration order", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const scope = yield* Scope.make()
        for (const name of ["a", "b", "c", "d"]) yield* registerIn(scope, log, name, 0)
        yield* Scope.close(scope, Exit.void)
        assert.deepStrictEqual(yield* Ref.get(log), ["d", "c", "b", "a"])
      }))

    it.effect("each scope releases only its own resources, once", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const first = yield* Scope.make()
        const second = yield* Scope.make()
        yield* registerIn(first, log, "first-a", 1)
        yield* registerIn(second, log, "second-a", 1)
        yield* registerIn(first, log, "first-b", 2)
        yield* Scope.close(second, Exit.void)
        assert.deepStrictEqual(yield* Ref.get(log), ["second-a"])
        yield* Scope.close(first, Exit.void)
        yield* Scope.close(first, Exit.void)
        assert.deepStrictEqual(yield* Ref.get(log), ["second-a", "first-b", "first-a"])
      }))

    it.effect("a release that never ends is cut after its timeout and the others still run", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const before = yield* failureCount
        const scope = yield* Scope.make()
        yield* registerIn(scope, log, "after", 1)
        yield* registerIn(scope, log, "stuck", 5, { timeout: "2 seconds", release: Effect.never })
        yield* registerIn(scope, log, "before", 9)
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("1999 millis")
        assert.deepStrictEqual(yield* Ref.get(log), ["before"])
        assert.isTrue(Option.isNone(yield* Fiber.poll(closing)))
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(closing)
        assert.deepStrictEqual(yield* Ref.get(log), ["before", "after"])
        assert.deepStrictEqual(yield* failuresSince(before), [
          new CleanupFailed({ resource: "stuck", reason: "timed out after 2s" })
        ])
      }))

    it.effect("without a timeout a release is bounded by 5 seconds", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const before = yield* failureCount
        const scope = yield* Scope.make()
        yield* registerIn(scope, log, "after", 0)
        yield* registerIn(scope, log, "uninterruptible", 1, {
          release: Effect.uninterruptible(Effect.never)
        })
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("4999 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(closing)))
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(closing)
        assert.deepStrictEqual(yield* Ref.get(log), ["after"])
        assert.deepStrictEqual(yield* failuresSince(before), [
          new CleanupFailed({ resource: "uninterruptible", reason: "timed out after 5s" })
        ])
      }))

    it.effect("a failing release is reported, logged and counted, and the others still run", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const before = yield* failureCount
        const countBefore = (yield* Metric.value(ResourceCleanupManagerLive.cleanupFailureCount)).count
        const messages = yield* Ref.make<ReadonlyArray<string>>([])
        const capture = Logger.make(({ logLevel, message }) => {
          Effect.runSync(Ref.update(messages, (all) => [...all, `${logLevel.label} ${String(message)}`]))
        })
        const scope = yield* Scope.make()
        yield* registerIn(scope, log, "last", 1)
        yield* registerIn(scope, log, "failing", 2, { release: Effect.fail(new Error("disk full")) })
        yield* registerIn(scope, log, "dying", 3, { release: Effect.die(new Error("bug")) })
        yield* registerIn(scope, log, "first", 4)
        const exit = yield* Scope.close(scope, Exit.void).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
          Effect.exit
        )
        assert.deepStrictEqual(exit, Exit.void)
        assert.deepStrictEqual(yield* Ref.get(log), ["first", "last"])
        const failures = yield* failuresSince(before)
        assert.deepStrictEqual(failures, [
          new CleanupFailed({ resource: "dying", reason: "defect: bug" }),
          new CleanupFailed({ resource: "failing", reason: "disk full" })
        ])
        assert.deepStrictEqual(yield* Ref.get(messages), [
          "WARN cleanup of dying failed: defect: bug",
          "WARN cleanup of failing failed: disk full"
        ])
        const countAfter = (yield* Metric.value(ResourceCleanupManagerLive.cleanupFailureCount)).count
        assert.strictEqual(countAfter - countBefore, 2)
      }))

    it.effect("emergency release frees the emergency resources of every scope, by priority across them, at each emergency", () =>
      Effect.gen(function*() {
        const manager = yield* ResourceCleanupManager
        const log = yield* makeLog
        const first = yield* Scope.make()
        const second = yield* Scope.make()
        yield* registerIn(first, log, "pool-low", 1, { emergency: true })
        yield* registerIn(first, log, "live-file", 5)
        yield* registerIn(second, log, "idle-conn", 3, { emergency: true })
        yield* registerIn(first, log, "pool-high", 7, { emergency: true })
        yield* registerIn(second, log, "live-socket", 2, { emergency: false })
        assert.deepStrictEqual(yield* manager.emergencyRelease, ["pool-high", "idle-conn", "pool-low"])
        assert.deepStrictEqual(yield* Ref.get(log), ["pool-high", "idle-conn", "pool-low"])
        assert.deepStrictEqual(
          yield* manager.emergencyRelease,
          ["pool-high", "idle-conn", "pool-low"],
          "they refill: release again"
        )
        yield* Ref.set(log, [])
        yield* Scope.close(first, Exit.void)
        assert.deepStrictEqual(yield* Ref.get(log), ["pool-high", "live-file", "pool-low"])
        assert.deepStrictEqual(yield* manager.emergencyRelease, ["idle-conn"], "a closed scope is gone")
        yield* Scope.close(second, Exit.void)
        assert.deepStrictEqual(yield* manager.emergencyRelease, [])
      }))

    it.effect("each emergency release is bounded by its timeout and a stuck one does not hold back the rest", () =>
      Effect.gen(function*() {
        const manager = yield* ResourceCleanupManager
        const log = yield* makeLog
        const before = yield* failureCount
        const scope = yield* Scope.make()
        yield* registerIn(scope, log, "stuck-pool", 9, { emergency: true, timeout: "1 second", release: Effect.never })
        yield* registerIn(scope, log, "pool", 1, { emergency: true })
        const releasing = yield* Effect.fork(manager.emergencyRelease)
        yield* TestClock.adjust("999 millis")
        assert.deepStrictEqual(yield* Ref.get(log), [])
        yield* TestClock.adjust("1 millis")
        assert.deepStrictEqual(yield* Fiber.join(releasing), ["stuck-pool", "pool"])
        assert.deepStrictEqual(yield* Ref.get(log), ["pool"])
        assert.deepStrictEqual(yield* failuresSince(before), [
          new CleanupFailed({ resource: "stuck-pool", reason: "timed out after 1s" })
        ])
      }))

    it.effect("resources are released when the scope closes after a failure", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const exit = yield* Effect.gen(function*() {
          const scope = yield* Effect.scope
          yield* registerIn(scope, log, "low", 1)
          yield* registerIn(scope, log, "high", 2)
          return yield* Effect.fail("read failed")
        }).pipe(Effect.scoped, Effect.exit)
        assert.deepStrictEqual(exit, Exit.fail("read failed"))
        assert.deepStrictEqual(yield* Ref.get(log), ["high", "low"])
      }))

    it.effect("resources are released, each in full, when the scope closes on interruption", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const registered = yield* Ref.make(false)
        const fiber = yield* Effect.gen(function*() {
          const scope = yield* Effect.scope
          yield* registerIn(scope, log, "low", 1)
          yield* registerIn(scope, log, "slow-high", 2, {
            release: Effect.sleep("100 millis").pipe(Effect.zipRight(releaseInto(log, "slow-high")))
          })
          yield* Ref.set(registered, true)
          return yield* Effect.never
        }).pipe(Effect.scoped, Effect.fork)
        while (!(yield* Ref.get(registered))) yield* Effect.yieldNow()
        const interrupting = yield* Effect.fork(Fiber.interrupt(fiber))
        yield* TestClock.adjust("99 millis")
        assert.deepStrictEqual(yield* Ref.get(log), [])
        yield* TestClock.adjust("1 millis")
        const exit = yield* Fiber.join(interrupting)
        assert.isTrue(Exit.isInterrupted(exit))
        assert.deepStrictEqual(yield* Ref.get(log), ["slow-high", "low"])
      }))

    it.effect("a resource registered on an already closed scope is released at once", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const scope = yield* Scope.make()
        yield* Scope.close(scope, Exit.void)
        yield* registerIn(scope, log, "late", 1)
        assert.deepStrictEqual(yield* Ref.get(log), ["late"])
      }))

    it.effect("concurrent registrations in one scope are all released", () =>
      Effect.gen(function*() {
        const log = yield* makeLog
        const scope = yield* Scope.make()
        const names = Array.from({ length: 50 }, (_, index) => `r${index}`)
        yield* Effect.forEach(names, (name) => registerIn(scope, log, name, 0), { concurrency: "unbounded" })
        yield* Scope.close(scope, Exit.void)
        const released = yield* Ref.get(log)
        assert.strictEqual(released.length, 50)
        assert.isTrue(HashSet.size(HashSet.fromIterable(released)) === 50)
      }))
  })
})

describe("emergencyOnCriticalPressure", () => {
  it.scoped("releases emergency resources each time the pressure level turns critical, and only those", () =>
    Effect.gen(function*() {
      const level = yield* SubscriptionRef.make<PressureLevel>("none")
      const pressure = Layer.succeed(
        BackpressureController,
        BackpressureController.of({
          level,
          current: SubscriptionRef.get(level),
          trackStream: Effect.void,
          reportConsumer: () => Effect.void,
          refresh: SubscriptionRef.get(level)
        })
      )
      const context = yield* Layer.build(
        ResourceCleanupManagerLive.emergencyOnCriticalPressure.pipe(
          Layer.provideMerge(ResourceCleanupManagerLive.layer),
          Layer.provide(pressure)
        )
      )
      const log = yield* makeLog
      const scope = yield* Scope.make()
      yield* registerIn(scope, log, "buffers", 1, { emergency: true }).pipe(Effect.provide(context))
      yield* registerIn(scope, log, "socket", 2).pipe(Effect.provide(context))
      yield* SubscriptionRef.set(level, "high")
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* Ref.get(log), [])
      yield* SubscriptionRef.set(level, "critical")
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* Ref.get(log), ["buffers"])
      yield* SubscriptionRef.set(level, "critical")
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* Ref.get(log), ["buffers"], "staying critical is not a new emergency")
      yield* SubscriptionRef.set(level, "high")
      yield* SubscriptionRef.set(level, "critical")
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* Ref.get(log), ["buffers", "buffers"], "turning critical again is")
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* Ref.get(log), ["buffers", "buffers", "socket", "buffers"])
    }))
})
