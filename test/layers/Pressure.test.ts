/**
 * What each pressure level does to a read, observed through `StreamingReader` on the test stack:
 * the level comes from real inputs (a share of the budget held by the test, a faked RSS that
 * grows), never set by hand.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Context, Effect, Exit, Fiber, HashMap, Layer, Logger, Option, Scope, Stream, TestClock } from "effect"
import * as BackpressureControllerLive from "../../src/layers/BackpressureControllerLive.js"
import * as FaultInjectingSource from "../../src/layers/FaultInjectingSource.js"
import { TestStack } from "../../src/layers/Stacks.js"
import type { EnhancedStackOptions, ReaderParts } from "../../src/layers/Stacks.js"
import { AdaptiveMemoryManager } from "../../src/services/AdaptiveMemoryManager.js"
import { BackpressureController } from "../../src/services/BackpressureController.js"
import { ByteSource } from "../../src/services/ByteSource.js"
import type { ReadError } from "../../src/services/StreamingReader.js"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import { ResourceCleanupManager } from "../../src/services/ResourceCleanupManager.js"
import { StreamingReader } from "../../src/services/StreamingReader.js"
import { concat, testBytes } from "../support/files.js"
import { fakeMemory, growingMemory, holdBudget } from "../support/pressure.js"

const bytes = testBytes(2 * MiB, 23)
const limit = 8 * MiB
const monitorInterval = 250

/** The test stack over `bytes` with an 8 MiB budget and a steady (fake) RSS unless told otherwise. */
const stack = (options: EnhancedStackOptions = {}) =>
  Effect.gen(function*() {
    const { sources } = yield* FaultInjectingSource.make(bytes, [])
    return yield* Layer.build(
      TestStack(Layer.succeed(ByteSource, sources), {
        memoryLimit: limit,
        memoryMonitor: { interval: `${monitorInterval} millis`, read: fakeMemory(100 * MiB).read },
        ...options
      })
    )
  })

/** Holds `share` of the budget of the stack `context` (see `holdBudget`). */
const press = (context: Context.Context<ReaderParts>, share: number) => Effect.provide(holdBudget(share), context)

/** The chunk sizes of a whole read of `source`, each chunk's bytes checked against the source. */
const readSizes = (context: Context.Context<ReaderParts>, source: string, chunkSize = 256 * KiB) =>
  Context.get(context, StreamingReader).read(source, { chunkSize }).pipe(
    Stream.runCollect,
    Effect.map((chunks) => {
      assert.isTrue(concat(chunks).equals(Buffer.from(bytes)), "every byte once, in order")
      return Chunk.toReadonlyArray(chunks).map((chunk) => chunk.length)
    })
  )

/** Pulls the rest of a read opened with `Stream.toPull`. */
const drain = (pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<ReadError>>) =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    for (;;) {
      const next = yield* Effect.either(pull)
      if (next._tag === "Right") { for (const chunk of next.right) chunks.push(chunk) }
      else if (Option.isNone(next.left)) return chunks
      else return yield* Effect.fail(next.left.value)
    }
  })

describe("pressure on a read", () => {
  it.scoped("none: the next chunk is read ahead while the consumer works; low: it is not", () =>
    Effect.gen(function*() {
      /** For each chunk, the bytes reserved beyond the test's hold and the chunk itself while the consumer has it. */
      const reservedAhead = (share: number) =>
        Effect.gen(function*() {
          const context = yield* stack()
          const memory = Context.get(context, AdaptiveMemoryManager)
          const level = share > 0 ? yield* press(context, share) : "none"
          const held = yield* memory.inUse
          const ahead: Array<number> = []
          yield* Context.get(context, StreamingReader).read("https://objects.test/ahead.bin", {
            chunkSize: 64 * KiB,
            maxChunk: 64 * KiB
          }).pipe(
            Stream.tap((chunk) =>
              Effect.gen(function*() {
                yield* TestClock.adjust("1 millis")
                yield* Effect.repeatN(Effect.yieldNow(), 10)
                ahead.push((yield* memory.inUse) - held - chunk.length)
              })
            ),
            Stream.runDrain
          )
          return { level, ahead }
        })
      const calm = yield* reservedAhead(0)
      assert.isTrue(
        calm.ahead.some((bytes) => bytes === 64 * KiB),
        "a consumer taking 1 ms gets the next chunk read ahead"
      )
      const low = yield* reservedAhead(0.6)
      assert.strictEqual(low.level, "low")
      assert.deepStrictEqual(new Set(low.ahead), new Set([0]), "nothing read ahead at low")
    }))

  it.scoped("none: chunks grow to the maximum; high: they halve at each chunk down to the minimum", () =>
    Effect.gen(function*() {
      const calm = yield* stack()
      const free = yield* readSizes(calm, "https://objects.test/calm.bin")
      assert.deepStrictEqual(new Set(free), new Set([256 * KiB]))

      const pressed = yield* stack()
      assert.strictEqual(yield* press(pressed, 0.8), "high")
      const reading = yield* Effect.fork(readSizes(pressed, "https://objects.test/high.bin"))
      yield* TestClock.adjust(BackpressureControllerLive.defaultAdmissionWait)
      const sizes = yield* Fiber.join(reading)
      assert.deepStrictEqual(sizes.slice(0, 5), [256 * KiB, 128 * KiB, 64 * KiB, 32 * KiB, 32 * KiB])
      assert.deepStrictEqual(new Set(sizes.slice(3)), new Set([32 * KiB]))
    }))

  it.scoped("critical: every chunk is the minimum, from the first one", () =>
    Effect.gen(function*() {
      const context = yield* stack()
      assert.strictEqual(yield* press(context, 0.96), "critical")
      const reading = yield* Effect.fork(readSizes(context, "https://objects.test/critical.bin"))
      yield* TestClock.adjust(BackpressureControllerLive.defaultAdmissionWait)
      const sizes = yield* Fiber.join(reading)
      assert.strictEqual(sizes.length, bytes.length / (32 * KiB))
      assert.deepStrictEqual(new Set(sizes), new Set([32 * KiB]))
    }))

  it.scoped("a new read waits while the level is high and starts when it drops, before its wait runs out", () =>
    Effect.gen(function*() {
      const context = yield* stack()
      const hold = yield* Scope.make()
      assert.strictEqual(yield* press(context, 0.8).pipe(Scope.extend(hold)), "high")
      const reading = yield* Effect.fork(readSizes(context, "https://objects.test/waits.bin"))
      yield* TestClock.adjust("1 second")
      assert.isTrue(Option.isNone(yield* Fiber.poll(reading)), "held back at high")
      yield* Scope.close(hold, Exit.void)
      yield* TestClock.adjust("500 millis")
      const done = yield* Fiber.poll(reading)
      assert.isTrue(
        Option.isSome(done),
        "started by the periodic refresh that saw the level drop, 1.5 s < the 2 s wait"
      )
      yield* Fiber.join(reading)
    }))

  it.scoped("critical releases the reusable memory of every read, by priority across reads, and the reads go on", () =>
    Effect.gen(function*() {
      const warnings: Array<string> = []
      const capture = Logger.make(({ annotations }) => {
        const released = HashMap.get(annotations, "released")
        if (Option.isSome(released)) warnings.push(String(released.value))
      })
      yield* Effect.gen(function*() {
        const context = yield* stack()
        const reader = Context.get(context, StreamingReader)
        const cleanup = Context.get(context, ResourceCleanupManager)
        const pullA = yield* Stream.toPull(reader.read("https://objects.test/a.bin", { chunkSize: 32 * KiB }))
        const pullB = yield* Stream.toPull(reader.read("https://objects.test/b.bin", { chunkSize: 32 * KiB }))
        const firstA = yield* pullA
        const firstB = yield* pullB
        const mine = yield* Scope.make()
        const register = (name: string, priority: number, emergency: boolean) =>
          Scope.extend(cleanup.register({ name, priority, release: Effect.void, emergency }), mine)
        yield* register("test: above every read", 1_000, true)
        yield* register("test: below every read", -1_000, true)
        yield* register("test: not reusable", 2_000, false)

        const hold = yield* Scope.make()
        assert.strictEqual(yield* press(context, 0.96).pipe(Scope.extend(hold)), "critical")
        yield* TestClock.adjust("10 millis")
        assert.strictEqual(warnings.length, 1, "one emergency")
        const released = warnings[0]!.split(", ")
        assert.strictEqual(released[0], "test: above every read")
        assert.strictEqual(released[released.length - 1], "test: below every read")
        const reads = released.slice(1, -1)
        assert.isTrue(reads.some((name) => name.includes("a.bin")), `read a released: ${released.join(" | ")}`)
        assert.isTrue(reads.some((name) => name.includes("b.bin")), `read b released: ${released.join(" | ")}`)
        assert.isFalse(released.includes("test: not reusable"))

        yield* Scope.close(hold, Exit.void)
        const restA = yield* drain(pullA)
        const restB = yield* drain(pullB)
        assert.isTrue(concat([...firstA, ...restA]).equals(Buffer.from(bytes)), "read a is whole")
        assert.isTrue(concat([...firstB, ...restB]).equals(Buffer.from(bytes)), "read b is whole")
        yield* Scope.close(mine, Exit.void)
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
    }))

  it.scoped("measured RSS growth tightens the budget: a read that fitted now waits for bytes to come back", () =>
    Effect.gen(function*() {
      const held = limit / 2 - 16 * KiB
      const steady = yield* stack()
      yield* press(steady, held / limit)
      yield* readSizes(steady, "https://objects.test/steady.bin", 64 * KiB)

      const growing = yield* stack({
        memoryMonitor: { interval: `${monitorInterval} millis`, read: growingMemory(10, monitorInterval).read }
      })
      const memory = Context.get(growing, AdaptiveMemoryManager)
      yield* TestClock.adjust("6 seconds")
      const effective = yield* memory.effectiveLimit
      assert.isAtMost(effective, limit / 2, "10 MB/s is twice the 5 MB/s allowance: half the budget")
      assert.isAbove(effective, limit / 2 - 16 * KiB)
      assert.strictEqual(memory.limit, limit, "the hard limit stays")
      assert.strictEqual(yield* Context.get(growing, BackpressureController).refresh, "low", "growth alone is only low")

      const hold = yield* Scope.make()
      yield* press(growing, held / limit).pipe(Scope.extend(hold))
      const reading = yield* Effect.fork(readSizes(growing, "https://objects.test/growing.bin", 64 * KiB))
      yield* TestClock.adjust("1 second")
      assert.isTrue(Option.isNone(yield* Fiber.poll(reading)), "64 KiB more does not fit the tightened budget")
      yield* Scope.close(hold, Exit.void)
      const sizes = yield* Fiber.join(reading)
      assert.strictEqual(sizes.reduce((a, b) => a + b, 0), bytes.length)
    }))
})
