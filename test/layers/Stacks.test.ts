import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Fiber, Layer, Option, Stream, TestClock } from "effect"
import * as FaultInjectingSource from "../../src/layers/FaultInjectingSource.js"
import { TestStack } from "../../src/layers/Stacks.js"
import { AdaptiveMemoryManager } from "../../src/services/AdaptiveMemoryManager.js"
import { BackpressureController } from "../../src/services/BackpressureController.js"
import { ByteSource } from "../../src/services/ByteSource.js"
import { CheckpointStore } from "../../src/services/CheckpointStore.js"
import { KiB, MiB } from "../../src/services/ReadOptions.js"
import { StreamingReader } from "../../src/services/StreamingReader.js"
import { concat, testBytes } from "../support/files.js"

const source = "https://objects.test/flags.bin"
const destination = "/out/flags.bin"
const bytes = testBytes(2 * MiB, 41)

/** The test stack with `STREAMING_READER_<flag>=false` for each flag given. */
const stackWithout = (flags: ReadonlyArray<string>, faults: ReadonlyArray<FaultInjectingSource.Fault> = []) =>
  Effect.gen(function*() {
    const { sources } = yield* FaultInjectingSource.make(bytes, faults)
    const env = new Map(flags.map((flag) => [`STREAMING_READER_${flag}`, "false"]))
    return yield* Layer.build(
      TestStack(Layer.succeed(ByteSource, sources), { memoryLimit: 8 * MiB }).pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(env, { pathDelim: "_" })))
      )
    )
  })

const chunkSizes = (context: Context.Context<StreamingReader>, options = {}) =>
  Context.get(context, StreamingReader).read(source, { chunkSize: 64 * KiB, ...options }).pipe(
    Stream.map((chunk) => chunk.length),
    Stream.runCollect,
    Effect.map((sizes) => Array.from(sizes))
  )

describe("feature flags: each one turns its part off", () => {
  it.scoped("STREAMING_READER_ADAPTIVE_CHUNKS=false keeps the chunk size fixed", () =>
    Effect.gen(function*() {
      const adaptive = yield* chunkSizes(yield* stackWithout([]))
      assert.strictEqual(Math.max(...adaptive), 256 * KiB, "adaptive sizing grows to the maximum")
      const fixed = yield* chunkSizes(yield* stackWithout(["ADAPTIVE_CHUNKS"]))
      assert.deepStrictEqual(new Set(fixed), new Set([64 * KiB]))
    }))

  it.scoped("STREAMING_READER_MEMORY_BUDGET=false removes the shared budget", () =>
    Effect.gen(function*() {
      assert.strictEqual(Context.get(yield* stackWithout([]), AdaptiveMemoryManager).limit, 8 * MiB)
      assert.strictEqual(
        Context.get(yield* stackWithout(["MEMORY_BUDGET"]), AdaptiveMemoryManager).limit,
        Number.POSITIVE_INFINITY
      )
    }))

  it.scoped("STREAMING_READER_BACKPRESSURE=false keeps the level at none", () =>
    Effect.gen(function*() {
      const levelAfterLag = (context: Context.Context<BackpressureController>) =>
        Effect.gen(function*() {
          const controller = Context.get(context, BackpressureController)
          yield* Effect.repeatN(controller.reportConsumer({ readMs: 1, waitMs: 100 }), 9)
          return yield* controller.refresh
        })
      assert.strictEqual(yield* levelAfterLag(yield* stackWithout([])), "low")
      assert.strictEqual(yield* levelAfterLag(yield* stackWithout(["BACKPRESSURE"])), "none")
    }))

  it.scoped("STREAMING_READER_RATE_LIMIT=false ignores the rate cap", () =>
    Effect.gen(function*() {
      const capped = yield* Effect.fork(chunkSizes(yield* stackWithout([]), { rate: 256 * KiB }))
      yield* TestClock.adjust("1 second")
      assert.isTrue(Option.isNone(yield* Fiber.poll(capped)), "2 MiB at 256 KiB/s takes about 8 s")
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual((yield* Fiber.join(capped)).reduce((a, b) => a + b, 0), bytes.length)
      const free = yield* Effect.fork(chunkSizes(yield* stackWithout(["RATE_LIMIT"]), { rate: 256 * KiB }))
      yield* TestClock.adjust("1 millis")
      assert.isTrue(Option.isSome(yield* Fiber.poll(free)), "no cap: done without the clock moving")
    }))

  it.scoped("STREAMING_READER_RETRIES=false fails on the first dropped connection", () =>
    Effect.gen(function*() {
      const cut = [FaultInjectingSource.Fault.Cut({ at: 300_000 })]
      const reader = Context.get(yield* stackWithout([], cut), StreamingReader)
      const retried = yield* Effect.fork(Stream.runCollect(reader.read(source)))
      yield* TestClock.adjust("5 seconds")
      assert.isTrue(concat(yield* Fiber.join(retried)).equals(Buffer.from(bytes)))
      const plain = Context.get(yield* stackWithout(["RETRIES"], cut), StreamingReader)
      const error = yield* Effect.flip(Stream.runDrain(plain.read(source)))
      assert.strictEqual(error._tag, "TransientReadError")
    }))

  it.scoped("STREAMING_READER_CHECKPOINTS=false saves no checkpoint", () =>
    Effect.gen(function*() {
      const interrupted = (context: Context.Context<StreamingReader | CheckpointStore>) =>
        Effect.gen(function*() {
          yield* Context.get(context, StreamingReader).read(source, {
            acknowledge: "on-pull",
            destination,
            checkpointEvery: 1
          }).pipe(
            Stream.take(3),
            Stream.runDrain
          )
          return yield* Context.get(context, CheckpointStore).load({ source, destination })
        })
      assert.isTrue(Option.isSome(yield* interrupted(yield* stackWithout([]))))
      assert.isTrue(Option.isNone(yield* interrupted(yield* stackWithout(["CHECKPOINTS"]))))
    }))
})
