/**
 * Sources without a strong validator: a resume never splices a byte range onto what was read.
 * It reads the source again from byte 0 and continues only past a prefix equal to what the
 * consumer acknowledged (in the same read) or to the checkpoint's digest (in a later one).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Option, Stream, TestClock } from "effect"
import type { Fault, FaultOptions } from "../../src/layers/FaultInjectingSource.js"
import * as FaultInjectingSource from "../../src/layers/FaultInjectingSource.js"
import { TestStack } from "../../src/layers/Stacks.js"
import { ByteSource } from "../../src/services/ByteSource.js"
import { CheckpointStore } from "../../src/services/CheckpointStore.js"
import { KiB } from "../../src/services/ReadOptions.js"
import type { ReadOptionsInput } from "../../src/services/ReadOptions.js"
import { StreamingReader } from "../../src/services/StreamingReader.js"
import { concat, testBytes } from "../support/files.js"

const { Change, Cut } = FaultInjectingSource.Fault

const withTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    for (let step = 0; step < 100_000; step++) {
      if (Option.isSome(yield* Fiber.poll(fiber))) break
      yield* TestClock.adjust("50 millis")
    }
    return yield* Fiber.join(fiber)
  })

const env = (bytes: Uint8Array, faults: ReadonlyArray<Fault>, options: FaultOptions) =>
  Effect.gen(function*() {
    const { injection, sources } = yield* FaultInjectingSource.make(bytes, faults, options)
    const context = yield* Layer.build(TestStack(Layer.succeed(ByteSource, sources)))
    return { reader: Context.get(context, StreamingReader), store: Context.get(context, CheckpointStore), injection }
  })

const source = "https://objects.test/weak.bin"
const destination = "/out/weak.bin"
const options: ReadOptionsInput = {
  acknowledge: "on-pull",
  destination,
  maxRetryDelayMs: 1_000,
  chunkSize: 32 * KiB,
  minChunk: 4 * KiB,
  checkpointEvery: 1
}

describe("StreamingReader: sources without a strong validator", () => {
  it.scoped("a cut is resumed by reading again from byte 0, and the output is byte-exact", () =>
    Effect.gen(function*() {
      const bytes = testBytes(600 * KiB, 21)
      const { injection, reader } = yield* env(bytes, [Cut({ at: 200_000 }), Cut({ at: 450_000 })], {
        validator: "weak"
      })
      const chunks = yield* withTestClock(Stream.runCollect(reader.read(source, options)))
      assert.isTrue(concat(chunks).equals(Buffer.from(bytes)))
      assert.deepStrictEqual((yield* injection.log).attempts, [0, 0, 0])
    }))

  it.scoped("a strong source resumes at its offset instead (the control)", () =>
    Effect.gen(function*() {
      const bytes = testBytes(600 * KiB, 22)
      const { injection, reader } = yield* env(bytes, [Cut({ at: 200_000 })], { validator: "strong" })
      const chunks = yield* withTestClock(Stream.runCollect(reader.read(source, options)))
      assert.isTrue(concat(chunks).equals(Buffer.from(bytes)))
      const attempts = (yield* injection.log).attempts
      assert.strictEqual(attempts.length, 2)
      assert.isAbove(attempts[1]!, 0)
    }))

  it.scoped("a source that changes during the read fails with SourceChanged and nothing of the new version is emitted", () =>
    Effect.gen(function*() {
      const bytes = testBytes(600 * KiB, 23)
      const changed = testBytes(600 * KiB, 24)
      const { reader } = yield* env(bytes, [Change({ at: 300_000 })], { validator: "weak", changedTo: changed })
      const received: Array<Uint8Array> = []
      const failure = yield* withTestClock(
        Effect.flip(Stream.runForEach(reader.read(source, options), (chunk) => Effect.sync(() => received.push(chunk))))
      )
      assert.strictEqual(failure._tag, "SourceChanged")
      const got = Buffer.concat(received)
      assert.isTrue(got.equals(Buffer.from(bytes.subarray(0, got.length))), "only the old version's bytes")
    }))

  it.scoped("a later read resumes at the checkpoint once the prefix matches its digest", () =>
    Effect.gen(function*() {
      const bytes = testBytes(600 * KiB, 25)
      const { injection, reader, store } = yield* env(bytes, [Cut({ at: 250_000 })], { validator: "weak" })
      const first = yield* withTestClock(Effect.exit(Stream.runDrain(reader.read(source, { ...options, retries: 0 }))))
      assert.isTrue(Exit.isFailure(first))
      const saved = yield* store.load({ source, destination })
      assert.isTrue(Option.isSome(saved))
      const checkpoint = Option.getOrThrow(saved)
      assert.isAbove(checkpoint.offset, 0)
      assert.isString(checkpoint.prefixSha256)
      const rest = yield* withTestClock(Effect.scoped(Effect.gen(function*() {
        const session = yield* reader.open(source, options)
        const chunks = yield* Stream.runCollect(session.stream)
        return { startOffset: session.startOffset, bytes: concat(chunks) }
      })))
      assert.strictEqual(rest.startOffset, checkpoint.offset)
      assert.isTrue(rest.bytes.equals(Buffer.from(bytes.subarray(checkpoint.offset))))
      assert.deepStrictEqual((yield* injection.log).attempts, [0, 0])
    }))

  it.scoped("a later read of a changed source starts again from byte 0 instead of splicing", () =>
    Effect.gen(function*() {
      const bytes = testBytes(600 * KiB, 26)
      const changed = testBytes(600 * KiB, 27)
      const { reader } = yield* env(bytes, [Change({ at: 250_000 })], { validator: "weak", changedTo: changed })
      const first = yield* withTestClock(Effect.exit(Stream.runDrain(reader.read(source, { ...options, retries: 0 }))))
      assert.isTrue(Exit.isFailure(first))
      const second = yield* withTestClock(Effect.scoped(Effect.gen(function*() {
        const session = yield* reader.open(source, options)
        const chunks = yield* Stream.runCollect(session.stream)
        return { startOffset: session.startOffset, bytes: concat(chunks) }
      })))
      assert.strictEqual(second.startOffset, 0)
      assert.isTrue(second.bytes.equals(Buffer.from(changed)))
    }))
})
