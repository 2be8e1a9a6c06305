import { assert, describe, it } from "@effect/vitest"
import { Chunk, Context, Effect, FastCheck as fc, Fiber, Layer, Option, Ref, Stream, TestClock } from "effect"
import type { Fault } from "../../src/layers/FaultInjectingSource.js"
import * as FaultInjectingSource from "../../src/layers/FaultInjectingSource.js"
import { TestStack } from "../../src/layers/Stacks.js"
import { ByteSource, HttpStatusError, SourceNotFound } from "../../src/services/ByteSource.js"
import { CheckpointStore } from "../../src/services/CheckpointStore.js"
import { KiB } from "../../src/services/ReadOptions.js"
import type { ReadOptionsInput } from "../../src/services/ReadOptions.js"
import { StreamingReader } from "../../src/services/StreamingReader.js"
import { AdaptiveMemoryManager } from "../../src/services/AdaptiveMemoryManager.js"
import * as ByteSourceLive from "../../src/layers/ByteSourceLive.js"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodePath from "node:path"
import { concat, tempDir, testBytes, writeFile } from "../support/files.js"

const { Change, Cut, Fail, Stall } = FaultInjectingSource.Fault

/** Runs `effect` in a fiber and moves the test clock on until it is done. */
const withTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    for (let step = 0; step < 100_000; step++) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) break
      yield* TestClock.adjust("50 millis")
    }
    return yield* Fiber.join(fiber)
  })

/** The reader over bytes that fail on `faults`, with the fault log. */
const faultyEnv = (bytes: Uint8Array, faults: ReadonlyArray<Fault>) =>
  Effect.gen(function*() {
    const { injection, sources } = yield* FaultInjectingSource.make(bytes, faults)
    const context = yield* Layer.build(TestStack(Layer.succeed(ByteSource, sources)))
    return { context, injection }
  })

const source = "https://objects.test/data.bin"
const destination = "/out/data.bin"
const fastRetries: ReadOptionsInput = {
  acknowledge: "on-pull",
  maxRetryDelayMs: 1_000,
  stallTimeoutMs: 2_000,
  chunkSize: 32 * KiB,
  minChunk: 4 * KiB
}

describe("StreamingReader (enhanced)", () => {
  it.scoped("reads through cuts, 503s, a stall and a dropped connection byte-exact, resuming where it stood", () =>
    Effect.gen(function*() {
      const bytes = testBytes(1024 * KiB, 3)
      const faults = [
        Cut({ at: 100_000 }),
        Fail({ at: 300_000, error: new HttpStatusError({ source, status: 503, retryAfterMs: 500 }) }),
        Stall({ at: 500_000 }),
        Cut({ at: 500_000 }),
        Cut({ at: 1_000_000 })
      ]
      const { context, injection } = yield* faultyEnv(bytes, faults)
      const reader = Context.get(context, StreamingReader)
      const chunks = yield* withTestClock(Stream.runCollect(reader.read(source, { ...fastRetries, destination })))
      assert.isTrue(concat(chunks).equals(Buffer.from(bytes)))
      const log = yield* injection.log
      assert.strictEqual(log.fired.length, faults.length)
      assert.deepStrictEqual(log.attempts, [0, 100_000, 300_000, 500_000, 500_000, 1_000_000])
      const store = Context.get(context, CheckpointStore)
      assert.isTrue(
        Option.isNone(yield* store.load({ source, destination })),
        "the checkpoint is deleted after success"
      )
    }))

  it.scoped("a fatal error ends the read at once, keeping a checkpoint of what the consumer had", () =>
    Effect.gen(function*() {
      const bytes = testBytes(512 * KiB, 4)
      const { context, injection } = yield* faultyEnv(bytes, [
        Fail({ at: 200_000, error: new SourceNotFound({ source }) })
      ])
      const reader = Context.get(context, StreamingReader)
      const received = yield* Ref.make(0)
      const error = yield* reader.read(source, { ...fastRetries, destination, checkpointEvery: 1 }).pipe(
        Stream.runForEach((chunk) => Ref.update(received, (n) => n + chunk.length)),
        Effect.flip
      )
      assert.strictEqual(error._tag, "SourceNotFound")
      assert.strictEqual((yield* injection.log).attempts.length, 1)
      const checkpoint = yield* Context.get(context, CheckpointStore).load({ source, destination })
      assert.isTrue(Option.isSome(checkpoint))
      assert.strictEqual(Option.getOrThrow(checkpoint).offset, yield* Ref.get(received))
    }))

  it.scoped("a source changed between attempts is refused, and nothing of the new version is emitted", () =>
    Effect.gen(function*() {
      const bytes = testBytes(256 * KiB, 5)
      const { context } = yield* faultyEnv(bytes, [Change({ at: 100_000 })])
      const reader = Context.get(context, StreamingReader)
      const received: Array<Uint8Array> = []
      const error = yield* withTestClock(
        reader.read(source, fastRetries).pipe(
          Stream.runForEach((chunk) => Effect.sync(() => received.push(chunk))),
          Effect.flip
        )
      )
      assert.strictEqual(error._tag, "SourceChanged")
      const got = concat(received)
      assert.strictEqual(got.length, 100_000)
      assert.isTrue(got.equals(Buffer.from(bytes.subarray(0, 100_000))))
    }))

  it.scoped("a read interrupted part-way resumes in a new session from its checkpoint, byte-exact", () =>
    Effect.gen(function*() {
      const bytes = testBytes(640 * KiB, 6)
      const { context } = yield* faultyEnv(bytes, [])
      const reader = Context.get(context, StreamingReader)
      const options: ReadOptionsInput = { ...fastRetries, maxChunk: 32 * KiB, destination, checkpointEvery: 3 }
      const first = yield* reader.read(source, options).pipe(Stream.take(7), Stream.runCollect)
      const checkpoint = Option.getOrThrow(yield* Context.get(context, CheckpointStore).load({ source, destination }))
      const firstBytes = concat(first)
      assert.isAtMost(checkpoint.offset, firstBytes.length, "a checkpoint never runs ahead of what was consumed")
      assert.isAbove(checkpoint.offset, 0)
      const rest = yield* Effect.scoped(
        Effect.gen(function*() {
          const session = yield* reader.open(source, options)
          assert.strictEqual(session.startOffset, checkpoint.offset)
          return yield* Stream.runCollect(session.stream)
        })
      )
      const whole = Buffer.concat([firstBytes.subarray(0, checkpoint.offset), concat(rest)])
      assert.isTrue(whole.equals(Buffer.from(bytes)))
    }))

  it.scoped("--restart ignores the checkpoint", () =>
    Effect.gen(function*() {
      const bytes = testBytes(256 * KiB, 8)
      const { context } = yield* faultyEnv(bytes, [])
      const reader = Context.get(context, StreamingReader)
      yield* reader.read(source, { ...fastRetries, maxChunk: 32 * KiB, destination, checkpointEvery: 1 }).pipe(
        Stream.take(4),
        Stream.runDrain
      )
      assert.isTrue(Option.isSome(yield* Context.get(context, CheckpointStore).load({ source, destination })))
      const session = yield* reader.open(source, { ...fastRetries, destination, restart: true })
      assert.strictEqual(session.startOffset, 0)
      assert.isTrue(concat(yield* Stream.runCollect(session.stream)).equals(Buffer.from(bytes)))
    }))

  it.effect.prop(
    "for any fault schedule within the retry budget the bytes emitted equal the source",
    {
      size: fc.integer({ min: 1, max: 300 * KiB }),
      faults: fc.array(
        fc.record({ kind: fc.constantFrom("cut", "503", "stall"), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
        { maxLength: 6 }
      )
    },
    ({ faults, size }) =>
      Effect.scoped(Effect.gen(function*() {
        const bytes = testBytes(size, size)
        const plan = faults.map(({ at, kind }) => {
          const offset = Math.floor(at * size)
          return kind === "cut"
            ? Cut({ at: offset })
            : kind === "503"
            ? Fail({ at: offset, error: new HttpStatusError({ source, status: 503 }) })
            : Stall({ at: offset })
        })
        const { context } = yield* faultyEnv(bytes, plan)
        const reader = Context.get(context, StreamingReader)
        const chunks = yield* withTestClock(
          Stream.runCollect(reader.read(source, { ...fastRetries, retries: faults.length }))
        )
        assert.isTrue(concat(Chunk.toReadonlyArray(chunks)).equals(Buffer.from(bytes)))
      })),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect.prop(
    "beyond the retry budget: a typed error, and a checkpoint whose bytes were all emitted",
    {
      size: fc.integer({ min: 64 * KiB, max: 300 * KiB }),
      at: fc.double({ min: 0, max: 0.99, noNaN: true }),
      retries: fc.integer({ min: 0, max: 4 })
    },
    ({ at, retries, size }) =>
      Effect.scoped(Effect.gen(function*() {
        const bytes = testBytes(size, size + 1)
        const offset = Math.floor(at * size)
        const plan = Array.from({ length: retries + 1 }, () => Cut({ at: offset }))
        const { context } = yield* faultyEnv(bytes, plan)
        const reader = Context.get(context, StreamingReader)
        const received: Array<Uint8Array> = []
        const error = yield* withTestClock(
          reader.read(source, { ...fastRetries, retries, destination, checkpointEvery: 1 }).pipe(
            Stream.runForEach((chunk) => Effect.sync(() => received.push(Uint8Array.from(chunk)))),
            Effect.flip
          )
        )
        assert.strictEqual(error._tag, "RetriesExhausted")
        const got = concat(received)
        assert.isTrue(got.equals(Buffer.from(bytes.subarray(0, got.length))))
        // Nothing acknowledged is nothing to checkpoint: a read cut at byte 0 keeps no row.
        const saved = yield* Context.get(context, CheckpointStore).load({ source, destination })
        const checkpointOffset = Option.match(saved, { onNone: () => 0, onSome: (checkpoint) => checkpoint.offset })
        assert.strictEqual(Option.isSome(saved), offset > 0)
        assert.isAtMost(checkpointOffset, got.length)
        assert.strictEqual(checkpointOffset, offset)
        if (error._tag === "RetriesExhausted") assert.strictEqual(error.checkpointOffset, checkpointOffset)
      })),
    { fastCheck: { numRuns: 30 } }
  )

  it.scoped("100 concurrent reads against slow consumers share one budget that is never exceeded", () =>
    Effect.gen(function*() {
      const bytes = testBytes(512 * KiB, 9)
      const { sources } = yield* FaultInjectingSource.make(bytes, [])
      const limit = 4 * 1024 * KiB
      const context = yield* Layer.build(TestStack(Layer.succeed(ByteSource, sources), { memoryLimit: limit }))
      const reader = Context.get(context, StreamingReader)
      const memory = Context.get(context, AdaptiveMemoryManager)
      const inUse: Array<number> = []
      const reads = yield* Effect.fork(Effect.forEach(
        Array.from({ length: 100 }, (_, i) => i),
        (i) =>
          reader.read(`${source}?copy=${i}`).pipe(
            Stream.tap(() => Effect.zipRight(Effect.sleep("1 millis"), Effect.map(memory.inUse, (n) => inUse.push(n)))),
            Stream.runCollect,
            Effect.map(concat)
          ),
        { concurrency: "unbounded" }
      ))
      const results = yield* withTestClock(Fiber.join(reads))
      assert.strictEqual(results.length, 100)
      assert.isTrue(results.every((result) => result.equals(Buffer.from(bytes))))
      assert.isAtMost(Math.max(...inUse), limit)
      assert.isAbove(Math.max(...inUse), limit / 2, "the budget was contended")
      assert.strictEqual(yield* memory.inUse, 0)
    }))
})

describe("memory budget", () => {
  it.scopedLive("reads stopped early give back every byte they reserved, the chunk read ahead included", () =>
    Effect.gen(function*() {
      const bytes = testBytes(2 * 1024 * KiB, 10)
      const { sources } = yield* FaultInjectingSource.make(bytes, [])
      const context = yield* Layer.build(TestStack(Layer.succeed(ByteSource, sources)))
      const reader = Context.get(context, StreamingReader)
      const memory = Context.get(context, AdaptiveMemoryManager)
      const slowConsumer = () => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2)))
      const taken = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => reader.read(`${source}?early=${i}`).pipe(Stream.tap(slowConsumer), Stream.take(3), Stream.runCollect),
        { concurrency: 10 }
      )
      assert.isTrue(taken.every((chunks) => chunks.length === 3))
      assert.strictEqual(yield* memory.inUse, 0)
    }))
})

describe("chunk ownership", () => {
  const fileEnv = (path: string) =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        TestStack(
          ByteSourceLive.layer.pipe(Layer.provide(Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici)))
        )
      )
      return { reader: Context.get(context, StreamingReader), path }
    })

  it.scoped("by default every chunk is the consumer's own: none is overwritten by later reads", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(3 * 1024 * KiB, 12)
      const { reader } = yield* fileEnv(writeFile(dir, "owned.bin", bytes))
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(reader.read(NodePath.join(dir, "owned.bin"))))
      let offset = 0
      for (const chunk of chunks) {
        assert.isTrue(Buffer.from(chunk).equals(Buffer.from(bytes.subarray(offset, offset + chunk.length))))
        offset += chunk.length
      }
      assert.strictEqual(offset, bytes.length)
      assert.strictEqual(new Set(chunks.map((chunk) => chunk.buffer)).size, chunks.length, "no buffer is shared")
    }))

  it.scoped("with reuseBuffers a chunk stays intact until the consumer pulls the next, and buffers are reused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bytes = testBytes(3 * 1024 * KiB, 13)
      const { reader } = yield* fileEnv(writeFile(dir, "reused.bin", bytes))
      const buffers = new Set<ArrayBufferLike>()
      let offset = 0
      let chunks = 0
      yield* reader.read(NodePath.join(dir, "reused.bin"), { reuseBuffers: true }).pipe(
        Stream.runForEach((chunk) =>
          Effect.gen(function*() {
            const copy = Buffer.from(chunk)
            yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2)))
            assert.isTrue(Buffer.from(chunk).equals(copy), "the read ahead did not write into the held chunk")
            assert.isTrue(copy.equals(Buffer.from(bytes.subarray(offset, offset + chunk.length))))
            offset += chunk.length
            chunks++
            buffers.add(chunk.buffer)
          })
        )
      )
      assert.strictEqual(offset, bytes.length)
      // The chunk held and the one read ahead, at each size the sizer went through.
      assert.isBelow(buffers.size, chunks / 2, `${chunks} chunks in ${buffers.size} buffers`)
    }))
})
