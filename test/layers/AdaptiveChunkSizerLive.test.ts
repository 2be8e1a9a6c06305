import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer, SubscriptionRef } from "effect"
import * as AdaptiveChunkSizerLive from "../../src/layers/AdaptiveChunkSizerLive.js"
import { AdaptiveChunkSizer } from "../../src/services/AdaptiveChunkSizer.js"
import type { ChunkSizing } from "../../src/services/AdaptiveChunkSizer.js"
import { BackpressureController, pressureLevels } from "../../src/services/BackpressureController.js"
import type { PressureLevel } from "../../src/services/BackpressureController.js"
import { KiB } from "../../src/services/ReadOptions.js"
import { FakeController } from "../support/pressure.js"

const TestEnv = AdaptiveChunkSizerLive.layer.pipe(Layer.provideMerge(FakeController))

const setPressure = (level: PressureLevel) =>
  Effect.flatMap(BackpressureController, (controller) => SubscriptionRef.set(controller.level, level))

const sizing = (bounds: { initial: number; min: number; max: number }) =>
  Effect.flatMap(AdaptiveChunkSizer, (sizer) => sizer.make(bounds))

const defaults = { initial: 64 * KiB, min: 32 * KiB, max: 256 * KiB }

/** Observes one chunk of the current size that took `latencyMs`, and returns the next size. */
const step = (state: ChunkSizing, latencyMs: number) =>
  Effect.gen(function*() {
    const bytes = yield* state.next
    yield* state.observe({ bytes, latencyMs })
    return yield* state.next
  })

const steps = (state: ChunkSizing, latencies: ReadonlyArray<number>) =>
  Effect.forEach(latencies, (ms) => step(state, ms))

describe("AdaptiveChunkSizerLive", () => {
  it.effect("starts at the initial size", () =>
    Effect.gen(function*() {
      const state = yield* sizing(defaults)
      assert.strictEqual(yield* state.next, 64 * KiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("grows to the maximum within a few fast chunks and stays there", () =>
    Effect.gen(function*() {
      const state = yield* sizing(defaults)
      assert.deepStrictEqual(yield* steps(state, [0.3, 0.5, 0.5, 0.5]), [128 * KiB, 256 * KiB, 256 * KiB, 256 * KiB])
    }).pipe(Effect.provide(TestEnv)))

  it.effect("still grows under low pressure", () =>
    Effect.gen(function*() {
      yield* setPressure("low")
      const state = yield* sizing(defaults)
      assert.deepStrictEqual(yield* steps(state, [1, 1]), [128 * KiB, 256 * KiB])
    }).pipe(Effect.provide(TestEnv)))

  it.effect("halves on slow chunks down to the minimum", () =>
    Effect.gen(function*() {
      const state = yield* sizing({ ...defaults, initial: 256 * KiB })
      assert.deepStrictEqual(yield* steps(state, [100, 100, 100, 100]), [128 * KiB, 64 * KiB, 32 * KiB, 32 * KiB])
    }).pipe(Effect.provide(TestEnv)))

  it.effect("keeps its size when a doubled chunk would miss the target", () =>
    Effect.gen(function*() {
      const state = yield* sizing(defaults)
      assert.deepStrictEqual(yield* steps(state, [15, 15, 15]), [64 * KiB, 64 * KiB, 64 * KiB])
    }).pipe(Effect.provide(TestEnv)))

  it.effect("judges latency per byte, so a short last chunk is not mistaken for speed", () =>
    Effect.gen(function*() {
      const state = yield* sizing(defaults)
      yield* state.observe({ bytes: 4 * KiB, latencyMs: 5 })
      assert.strictEqual(yield* state.next, 32 * KiB)
      yield* state.observe({ bytes: 0, latencyMs: 0 })
      assert.strictEqual(yield* state.next, 32 * KiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a chunk shorter than asked brings the size down to what came, however fast it came", () =>
    Effect.gen(function*() {
      const state = yield* sizing({ initial: 256 * KiB, min: 4 * KiB, max: 256 * KiB })
      yield* state.observe({ bytes: 5000, latencyMs: 0.01 })
      assert.strictEqual(yield* state.next, 8 * KiB, "5000 bytes rounded up to 4 KiB")
      yield* state.observe({ bytes: 512, latencyMs: 120 })
      assert.strictEqual(yield* state.next, 4 * KiB, "never below the minimum")
      assert.deepStrictEqual(
        yield* steps(state, [0.1, 0.1, 0.1]),
        [8 * KiB, 16 * KiB, 32 * KiB],
        "full fast chunks grow it back"
      )
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a short chunk never takes the size below the minimum or above what it was", () =>
    Effect.gen(function*() {
      const state = yield* sizing(defaults)
      yield* state.observe({ bytes: 2 * KiB, latencyMs: 0 })
      assert.strictEqual(yield* state.next, 32 * KiB)
      yield* state.observe({ bytes: 32 * KiB - 1, latencyMs: 0 })
      assert.strictEqual(yield* state.next, 32 * KiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("a chunk read ahead whole at a smaller size than the current one is not short: the size keeps growing", () =>
    Effect.gen(function*() {
      const state = yield* sizing({ initial: 64 * KiB, min: 32 * KiB, max: 256 * KiB })
      yield* state.observe({ bytes: 64 * KiB, latencyMs: 0.01, asked: 64 * KiB })
      assert.strictEqual(yield* state.next, 128 * KiB)
      yield* state.observe({ bytes: 64 * KiB, latencyMs: 0.01, asked: 64 * KiB })
      assert.strictEqual(yield* state.next, 256 * KiB, "the chunk prepared at 64 KiB did not pull the size back")
      yield* state.observe({ bytes: 100 * KiB, latencyMs: 0.01, asked: 256 * KiB })
      assert.strictEqual(yield* state.next, 100 * KiB, "one shorter than it was asked for still is")
    }).pipe(Effect.provide(TestEnv)))

  it.effect("under high pressure a short chunk gives the smaller of what came and half the size", () =>
    Effect.gen(function*() {
      yield* setPressure("high")
      const state = yield* sizing({ initial: 256 * KiB, min: 4 * KiB, max: 256 * KiB })
      yield* state.observe({ bytes: 200 * KiB, latencyMs: 1 })
      assert.strictEqual(yield* state.next, 128 * KiB)
      yield* state.observe({ bytes: 20 * KiB, latencyMs: 1 })
      assert.strictEqual(yield* state.next, 20 * KiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect.prop(
    "a chunk shorter than the size never makes the next one larger",
    {
      initial: fc.integer({ min: 4 * KiB, max: 256 * KiB }),
      share: fc.double({ min: 0.0001, max: 0.9999, noNaN: true }),
      latencyMs: fc.double({ min: 0, max: 1_000, noNaN: true })
    },
    ({ initial, latencyMs, share }) =>
      Effect.gen(function*() {
        const state = yield* sizing({ initial, min: 4 * KiB, max: 256 * KiB })
        const before = yield* state.next
        const bytes = Math.max(1, Math.floor(before * share))
        yield* state.observe({ bytes, latencyMs })
        const after = yield* state.next
        assert.isAtMost(after, before)
        assert.isAtLeast(after, Math.min(before, Math.max(4 * KiB, bytes)))
      }).pipe(Effect.provide(TestEnv))
  )

  it.effect("halves under high pressure even when chunks are fast, and grows again when it falls", () =>
    Effect.gen(function*() {
      const state = yield* sizing({ ...defaults, initial: 256 * KiB })
      yield* setPressure("high")
      assert.deepStrictEqual(yield* steps(state, [0.1, 0.1, 0.1]), [128 * KiB, 64 * KiB, 32 * KiB])
      yield* setPressure("none")
      assert.deepStrictEqual(yield* steps(state, [0.1, 0.1, 0.1]), [64 * KiB, 128 * KiB, 256 * KiB])
    }).pipe(Effect.provide(TestEnv)))

  it.effect("jumps to the minimum at critical pressure, before any observation", () =>
    Effect.gen(function*() {
      const state = yield* sizing({ ...defaults, initial: 256 * KiB })
      yield* setPressure("critical")
      assert.strictEqual(yield* state.next, 32 * KiB)
      yield* state.observe({ bytes: 32 * KiB, latencyMs: 0.1 })
      assert.strictEqual(yield* state.next, 32 * KiB)
      yield* setPressure("none")
      assert.strictEqual(yield* step(state, 0.1), 64 * KiB)
    }).pipe(Effect.provide(TestEnv)))

  it.effect("rounds to 4 KiB inside bounds and lands exactly on bounds that are not multiples", () =>
    Effect.gen(function*() {
      const rounded = yield* sizing({ initial: 100_000, min: 5000, max: 200_000 })
      assert.strictEqual(yield* rounded.next, 98_304)
      const state = yield* sizing({ initial: 5000, min: 5000, max: 70_000 })
      assert.strictEqual(yield* state.next, 5000)
      assert.deepStrictEqual(yield* steps(state, [0, 0, 0, 0, 0]), [12_288, 24_576, 49_152, 70_000, 70_000])
      assert.deepStrictEqual(yield* steps(state, [1000, 1000, 1000, 1000]), [32_768, 16_384, 8192, 5000])
    }).pipe(Effect.provide(TestEnv)))

  it.effect("honours a custom latency target", () =>
    Effect.gen(function*() {
      const sizer = yield* AdaptiveChunkSizerLive.make({ targetLatencyMs: 200 })
      const state = yield* sizer.make(defaults)
      assert.deepStrictEqual(yield* steps(state, [50, 150]), [128 * KiB, 128 * KiB])
    }).pipe(Effect.provide(FakeController)))

  it.effect.prop(
    "for any observations and pressure levels the size stays within [min, max] on 4 KiB steps",
    {
      bounds: fc.tuple(fc.integer({ min: 1, max: 8 * 1024 * KiB }), fc.integer({ min: 0, max: 8 * 1024 * KiB }))
        .map(([min, extra]) => ({ min, max: min + extra })),
      initial: fc.oneof(fc.integer({ min: -KiB, max: 16 * 1024 * KiB }), fc.constant(Number.NaN)),
      events: fc.array(
        fc.record({
          bytes: fc.oneof(fc.nat({ max: 16 * 1024 * KiB }), fc.constant(-1)),
          latencyMs: fc.oneof(fc.double({ min: -10, max: 10_000, noNaN: true }), fc.constant(Number.NaN)),
          pressure: fc.constantFrom(...pressureLevels)
        }),
        { maxLength: 60 }
      )
    },
    ({ bounds, events, initial }) =>
      Effect.gen(function*() {
        const state = yield* sizing({ initial, ...bounds })
        const check = (size: number) => {
          assert.isAtLeast(size, bounds.min)
          assert.isAtMost(size, bounds.max)
          assert.isTrue(size % AdaptiveChunkSizerLive.granule === 0 || size === bounds.min || size === bounds.max)
        }
        check(yield* state.next)
        for (const event of events) {
          yield* setPressure(event.pressure)
          yield* state.observe({ bytes: event.bytes, latencyMs: event.latencyMs })
          check(yield* state.next)
        }
      }).pipe(Effect.provide(TestEnv)),
    { fastCheck: { numRuns: 200 } }
  )
})
