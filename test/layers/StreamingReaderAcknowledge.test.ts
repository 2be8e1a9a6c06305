/**
 * The consumer owns acknowledgement: chunks carry their offsets, and a checkpoint only ever
 * vouches for bytes the consumer acknowledged, however far ahead it pulls.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Context, Effect, Exit, Layer, Option, Stream } from "effect"
import * as FaultInjectingSource from "../../src/layers/FaultInjectingSource.js"
import type { FaultOptions } from "../../src/layers/FaultInjectingSource.js"
import { TestStack } from "../../src/layers/Stacks.js"
import { ByteSource } from "../../src/services/ByteSource.js"
import type { Checkpoint, CheckpointStoreShape } from "../../src/services/CheckpointStore.js"
import { CheckpointStore } from "../../src/services/CheckpointStore.js"
import { KiB } from "../../src/services/ReadOptions.js"
import type { ReadOptionsInput } from "../../src/services/ReadOptions.js"
import * as StreamingReaderLive from "../../src/layers/StreamingReaderLive.js"
import { testBytes } from "../support/files.js"

const source = "https://objects.test/records.bin"
const destination = "/out/records.bin"
const options: ReadOptionsInput = { destination, chunkSize: 16 * KiB, minChunk: 4 * KiB, maxChunk: 16 * KiB }

/** A reader over `bytes`, and every checkpoint saved, in order. */
const env = (bytes: Uint8Array, faultOptions: FaultOptions = {}) =>
  Effect.gen(function*() {
    const { sources } = yield* FaultInjectingSource.make(bytes, [], faultOptions)
    const context = yield* Layer.build(TestStack(Layer.succeed(ByteSource, sources)))
    const store = Context.get(context, CheckpointStore)
    const saves: Array<Checkpoint> = []
    const recording: CheckpointStoreShape = {
      ...store,
      save: (checkpoint) => Effect.zipRight(Effect.sync(() => saves.push(checkpoint)), store.save(checkpoint))
    }
    // The same parts, the store recorded: a reader built over them.
    const reader = yield* Effect.provide(StreamingReaderLive.make, Context.add(context, CheckpointStore, recording))
    return { reader, store, saves, sources }
  })

describe("StreamingReader: acknowledgement", () => {
  it.scoped("chunks carry their offsets, contiguous from the start", () =>
    Effect.gen(function*() {
      const bytes = testBytes(100 * KiB, 1)
      const { reader } = yield* env(bytes)
      const session = yield* reader.open(source, { chunkSize: 16 * KiB, minChunk: 4 * KiB, maxChunk: 16 * KiB })
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(session.chunks))
      let expected = 0
      for (const chunk of chunks) {
        assert.strictEqual(chunk.offset, expected)
        assert.isTrue(
          Buffer.from(chunk.bytes).equals(Buffer.from(bytes.subarray(expected, expected + chunk.bytes.length)))
        )
        expected += chunk.bytes.length
      }
      assert.strictEqual(expected, bytes.length)
    }))

  it.scoped("a consumer that pulls ahead in batches gets checkpoints only at the ends of batches it committed", () =>
    Effect.gen(function*() {
      const bytes = testBytes(400 * KiB, 2)
      const { reader, saves } = yield* env(bytes)
      const session = yield* reader.open(source, { ...options, checkpointEvery: 3 })
      const committed: Array<number> = []
      yield* session.chunks.pipe(
        Stream.buffer({ capacity: 8 }),
        Stream.grouped(5),
        Stream.runForEach((batch) =>
          Effect.gen(function*() {
            const last = Chunk.unsafeLast(batch)
            const end = last.offset + last.bytes.length
            // What is saved before the batch commits must not vouch for any of it.
            for (const save of saves) assert.isAtMost(save.offset, committed.at(-1) ?? 0)
            committed.push(end)
            yield* session.acknowledge(end)
          })
        )
      )
      assert.isAbove(saves.length, 2)
      for (const save of saves) {
        assert.include(committed, save.offset, `checkpoint ${save.offset} is a committed batch end`)
      }
    }))

  it.scoped("a read stopped part-way checkpoints the acknowledged offset, and the next read starts there, inside a chunk", () =>
    Effect.gen(function*() {
      const bytes = testBytes(200 * KiB, 3)
      const { reader, store } = yield* env(bytes)
      const recordEnd = 50_001
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* reader.open(source, options)
        yield* session.chunks.pipe(
          Stream.takeWhile((chunk) => chunk.offset < 80_000),
          Stream.runForEach((chunk) =>
            chunk.offset <= recordEnd && recordEnd < chunk.offset + chunk.bytes.length
              ? session.acknowledge(recordEnd)
              : Effect.void
          )
        )
        return yield* session.acknowledged
      }))
      assert.strictEqual(first.offset, recordEnd)
      const saved = Option.getOrThrow(yield* store.load({ source, destination }))
      assert.strictEqual(saved.offset, recordEnd, "the last checkpoint is what was acknowledged, not what was pulled")

      const session = yield* reader.open(source, options)
      assert.strictEqual(session.startOffset, recordEnd)
      assert.isTrue(Option.isSome(session.resumedFrom))
      const rest = Chunk.toReadonlyArray(yield* Stream.runCollect(session.chunks))
      assert.strictEqual(rest[0]!.offset, recordEnd)
      const tail = Buffer.concat(rest.map((chunk) => chunk.bytes))
      assert.isTrue(tail.equals(Buffer.from(bytes.subarray(recordEnd))))
    }))

  it.scoped("with acknowledge: on-pull, pulling a chunk acknowledges the one before (the consumer that finishes each chunk)", () =>
    Effect.gen(function*() {
      const bytes = testBytes(160 * KiB, 4)
      const { reader, saves } = yield* env(bytes)
      const offsets: Array<number> = []
      yield* reader.read(source, { ...options, acknowledge: "on-pull", checkpointEvery: 2 }).pipe(
        Stream.runForEach((chunk) => Effect.sync(() => offsets.push(chunk.length)))
      )
      assert.isAbove(saves.length, 2)
      for (let i = 1; i < saves.length; i++) assert.isAbove(saves[i]!.offset, saves[i - 1]!.offset)
    }))

  it.scoped("read() with a destination and explicit acknowledgement is refused: nothing could ever be checkpointed", () =>
    Effect.gen(function*() {
      const { reader } = yield* env(testBytes(10 * KiB, 5))
      const error = yield* Effect.flip(Stream.runDrain(reader.read(source, options)))
      assert.strictEqual(error._tag, "InvalidOptions")
    }))

  it.scoped("acknowledging bytes never emitted is a defect, not a silent checkpoint", () =>
    Effect.gen(function*() {
      const bytes = testBytes(64 * KiB, 6)
      const { reader } = yield* env(bytes)
      const session = yield* reader.open(source, options)
      const exit = yield* Effect.exit(session.chunks.pipe(
        Stream.take(1),
        Stream.runForEach((chunk) => session.acknowledge(chunk.offset + chunk.bytes.length + 1))
      ))
      assert.isTrue(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.exists((cause) => cause._tag === "Die")))
    }))

  it.scoped("the checkpoint is deleted once every byte of a finished read is acknowledged, even after the stream ended", () =>
    Effect.gen(function*() {
      const bytes = testBytes(64 * KiB, 7)
      const { reader, store } = yield* env(bytes)
      const session = yield* reader.open(source, { ...options, checkpointEvery: 1 })
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(session.chunks))
      const half = chunks[1]!.offset
      yield* session.acknowledge(half)
      assert.strictEqual(Option.getOrThrow(yield* store.load({ source, destination })).offset, half)
      yield* session.acknowledge(bytes.length)
      assert.isTrue(Option.isNone(yield* store.load({ source, destination })))
    }))

  it.scoped("an explicit start with another version of the source is refused with SourceChanged", () =>
    Effect.gen(function*() {
      const bytes = testBytes(64 * KiB, 8)
      const { reader } = yield* env(bytes, { validator: "strong" })
      const error = yield* Effect.flip(
        reader.open(source, {}, { offset: 1000, identity: { size: bytes.length, etag: "\"other\"" } })
      )
      assert.strictEqual(error._tag, "SourceChanged")
    }))

  it.scoped("a source without a strong validator resumes after a mid-chunk acknowledgement past an equal prefix", () =>
    Effect.gen(function*() {
      const bytes = testBytes(120 * KiB, 9)
      const { reader } = yield* env(bytes, { validator: "weak" })
      const at = 40_003
      const resume = yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* reader.open(source, options)
        yield* session.chunks.pipe(Stream.takeWhile((chunk) => chunk.offset <= at), Stream.runDrain)
        yield* session.acknowledge(at)
        return yield* session.acknowledged
      }))
      assert.strictEqual(resume.offset, at)
      assert.isString(resume.prefixSha256)
      const session = yield* reader.open(source, options)
      assert.strictEqual(session.startOffset, at, "the saved prefix digest matched the bytes read again")
      const tail = Buffer.concat(Chunk.toReadonlyArray(yield* Stream.runCollect(session.stream)))
      assert.isTrue(tail.equals(Buffer.from(bytes.subarray(at))))
    }))
})
