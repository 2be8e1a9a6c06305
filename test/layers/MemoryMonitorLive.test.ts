import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import * as MemoryMonitorLive from "../../src/layers/MemoryMonitorLive.js"
import type { MemoryReading } from "../../src/layers/MemoryMonitorLive.js"
import { MemoryMonitor } from "../../src/services/MemoryMonitor.js"

const MB = MemoryMonitorLive.bytesPerMb

/** A fake memory reader whose RSS the test sets; counts its calls. */
const fakeMemory = (rss: number) => {
  const state = { rss, calls: 0 }
  const read = (): MemoryReading => {
    state.calls++
    return { rss: state.rss, heapUsed: state.rss / 2, arrayBuffers: 1024 }
  }
  return { state, read }
}

describe("MemoryMonitorLive", () => {
  it.scoped("samples once at start, then once per interval on the clock", () =>
    Effect.gen(function*() {
      const memory = fakeMemory(100 * MB)
      const monitor = yield* MemoryMonitorLive.make({ interval: "250 millis", read: memory.read })
      assert.strictEqual(memory.state.calls, 1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(memory.state.calls, 5)
      const latest = yield* monitor.latest
      assert.deepStrictEqual(latest, { atMs: 1000, rss: 100 * MB, heapUsed: 50 * MB, arrayBuffers: 1024 })
    }))

  it.scoped("measures rising RSS as MB/s over the window", () =>
    Effect.gen(function*() {
      const memory = fakeMemory(100 * MB)
      const monitor = yield* MemoryMonitorLive.make({ interval: "250 millis", window: "10 seconds", read: memory.read })
      for (let i = 0; i < 20; i++) {
        memory.state.rss += MB / 2
        yield* TestClock.adjust("250 millis")
      }
      const growth = yield* monitor.growthMbPerSec
      assert.closeTo(growth, 2, 1e-9)
      assert.strictEqual(yield* monitor.peakRss, 110 * MB)
    }))

  it.scoped("keeps the peak when RSS falls, and growth turns negative", () =>
    Effect.gen(function*() {
      const memory = fakeMemory(200 * MB)
      const monitor = yield* MemoryMonitorLive.make({ interval: "250 millis", window: "4 seconds", read: memory.read })
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 8; i++) {
        memory.state.rss -= MB
        yield* TestClock.adjust("250 millis")
      }
      assert.strictEqual(yield* monitor.peakRss, 200 * MB)
      assert.strictEqual((yield* monitor.latest).rss, 192 * MB)
      assert.isBelow(yield* monitor.growthMbPerSec, 0)
    }))

  it.scoped("judges no growth before half of the window is filled (start-up is not growth)", () =>
    Effect.gen(function*() {
      const memory = fakeMemory(100 * MB)
      const monitor = yield* MemoryMonitorLive.make({ interval: "250 millis", window: "4 seconds", read: memory.read })
      for (let i = 0; i < 7; i++) {
        memory.state.rss += 10 * MB
        yield* TestClock.adjust("250 millis")
      }
      assert.strictEqual(yield* monitor.growthMbPerSec, 0)
      memory.state.rss += 10 * MB
      yield* TestClock.adjust("250 millis")
      assert.isAbove(yield* monitor.growthMbPerSec, 30)
    }))

  it.scoped("forgets growth that left the sliding window", () =>
    Effect.gen(function*() {
      const memory = fakeMemory(100 * MB)
      const monitor = yield* MemoryMonitorLive.make({ interval: "250 millis", window: "2 seconds", read: memory.read })
      for (let i = 0; i < 8; i++) {
        memory.state.rss += 10 * MB
        yield* TestClock.adjust("250 millis")
      }
      assert.isAbove(yield* monitor.growthMbPerSec, 30)
      yield* TestClock.adjust("3 seconds")
      assert.strictEqual(yield* monitor.growthMbPerSec, 0)
      assert.strictEqual(yield* monitor.peakRss, 180 * MB)
    }))

  it.scoped("sample takes a reading on demand and records it", () =>
    Effect.gen(function*() {
      const memory = fakeMemory(10 * MB)
      const monitor = yield* MemoryMonitorLive.make({ interval: "1 hour", read: memory.read })
      memory.state.rss = 42 * MB
      const taken = yield* monitor.sample
      assert.strictEqual(taken.rss, 42 * MB)
      assert.deepStrictEqual(yield* monitor.latest, taken)
      assert.strictEqual(yield* monitor.peakRss, 42 * MB)
    }))

  it.effect("stops sampling when its scope closes", () =>
    Effect.gen(function*() {
      const memory = fakeMemory(10 * MB)
      const scope = yield* Scope.make()
      yield* MemoryMonitorLive.make({ interval: "250 millis", read: memory.read }).pipe(Scope.extend(scope))
      yield* TestClock.adjust("500 millis")
      assert.strictEqual(memory.state.calls, 3)
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(memory.state.calls, 3)
    }))

  it.scoped("keeps sampling after a failed reading", () =>
    Effect.gen(function*() {
      const memory = fakeMemory(10 * MB)
      let fail = false
      const read = () => {
        if (fail) {
          fail = false
          throw new Error("memoryUsage failed")
        }
        return memory.read()
      }
      yield* MemoryMonitorLive.make({ interval: "250 millis", read })
      fail = true
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(memory.state.calls, 1)
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(memory.state.calls, 2)
    }))

  it.effect("the default layer reads real process memory", () =>
    Effect.gen(function*() {
      const monitor = yield* MemoryMonitor
      const latest = yield* monitor.latest
      assert.isAbove(latest.rss, 0)
      assert.isAbove(latest.heapUsed, 0)
      assert.strictEqual(yield* monitor.peakRss, latest.rss)
    }).pipe(Effect.provide(MemoryMonitorLive.layer())))
})
