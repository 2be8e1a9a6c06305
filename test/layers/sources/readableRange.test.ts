import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc, Fiber, Option, Scope } from "effect"
import { Readable } from "node:stream"
import type { ReadableRangeOptions } from "../../../src/layers/sources/readableRange.js"
import { readableRange } from "../../../src/layers/sources/readableRange.js"
import { concat, testBytes } from "../../support/files.js"

/** A stream the test feeds by hand; `reads` counts how often the stream asked for more. */
const handFed = () => {
  let reads = 0
  const readable = new Readable({
    read() {
      reads++
    }
  })
  return { readable, reads: () => reads }
}

/** Lets the stream's queued events (next ticks, immediates) run. */
const ioTurns = (n = 3): Effect.Effect<void> =>
  n === 0
    ? Effect.void
    : Effect.zipRight(Effect.async<void>((resume) => void setImmediate(() => resume(Effect.void))), ioTurns(n - 1))

type Ended = { readonly _tag: "Ended"; readonly received: number }
type Failed = { readonly _tag: "Failed"; readonly cause: unknown }

/** Options that report the end as `Ended` when the range fell short of `limit`, and errors as `Failed`. */
const options = (skip: number, limit: number, holdMs?: number): ReadableRangeOptions<Ended | Failed> => ({
  skip,
  limit,
  onEnd: (received) => received < skip + limit && Number.isFinite(limit) ? { _tag: "Ended", received } : undefined,
  onError: (cause) => ({ _tag: "Failed", cause }),
  ...(holdMs === undefined ? {} : { holdMs })
})

const same = (actual: Uint8Array, expected: Uint8Array) =>
  assert.isTrue(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected)))

describe("readableRange", () => {
  it.scopedLive.prop(
    "any pieces, range and pull sizes deliver exactly the range, each pull 1 to its size",
    {
      length: fc.integer({ min: 0, max: 50_000 }),
      pieces: fc.array(fc.integer({ min: 1, max: 9_000 }), { minLength: 1, maxLength: 6 }),
      skip: fc.integer({ min: 0, max: 20_000 }),
      limit: fc.oneof(fc.integer({ min: 1, max: 60_000 }), fc.constant(Infinity)),
      pulls: fc.array(fc.integer({ min: 1, max: 12_000 }), { minLength: 1, maxLength: 6 })
    },
    ({ length, limit, pieces, pulls, skip }) =>
      Effect.gen(function*() {
        const bytes = testBytes(length, 5)
        const { readable } = handFed()
        for (let at = 0, i = 0; at < length; i++) {
          const size = pieces[i % pieces.length]!
          readable.push(Buffer.from(bytes.subarray(at, at + size)))
          at += size
        }
        readable.push(null)
        const pull = yield* readableRange(readable, yield* Effect.scope, options(skip, limit))
        const got: Array<Uint8Array> = []
        let last: Exit.Exit<Uint8Array, Ended | Failed>
        for (let i = 0;; i++) {
          const asked = pulls[i % pulls.length]!
          last = yield* Effect.exit(pull(asked))
          if (Exit.isFailure(last)) break
          assert.isAtMost(last.value.byteLength, asked)
          if (last.value.byteLength === 0) break
          got.push(last.value)
        }
        same(concat(got), bytes.subarray(Math.min(skip, length), Math.min(length, skip + limit)))
        const short = Number.isFinite(limit) && skip + limit > length
        const end: Exit.Exit<Uint8Array, Ended | Failed> = short
          ? Exit.fail({ _tag: "Ended", received: length })
          : Exit.succeed(new Uint8Array(0))
        assert.deepStrictEqual(last, end)
        assert.deepStrictEqual(yield* Effect.exit(pull(1)), end, "stays at the end")
      }),
    { fastCheck: { numRuns: 60 } }
  )

  it.scopedLive("bytes past the limit are never delivered, even those in the piece that reaches it", () =>
    Effect.gen(function*() {
      const { readable } = handFed()
      const pull = yield* readableRange(readable, yield* Effect.scope, options(0, 10))
      readable.push(Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]))
      const chunk = yield* pull(100)
      assert.deepStrictEqual(chunk, new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))
      assert.deepStrictEqual(yield* pull(100), new Uint8Array(0))
    }))

  it.scopedLive("a pull that spans pieces joins them into `into`; one piece that covers it is a view", () =>
    Effect.gen(function*() {
      const bytes = testBytes(3_000, 9)
      const { readable } = handFed()
      readable.push(Buffer.from(bytes.subarray(0, 1_000)))
      readable.push(Buffer.from(bytes.subarray(1_000, 2_000)))
      readable.push(Buffer.from(bytes.subarray(2_000, 3_000)))
      readable.push(null)
      const pull = yield* readableRange(readable, yield* Effect.scope, options(0, Infinity))
      const into = new Uint8Array(4_096)
      const joined = yield* pull(1_500, into)
      assert.strictEqual(joined.buffer, into.buffer)
      same(joined, bytes.subarray(0, 1_500))
      const view = yield* pull(500, into)
      assert.notStrictEqual(view.buffer, into.buffer)
      same(view, bytes.subarray(1_500, 2_000))
      const fresh = yield* pull(2_000)
      assert.strictEqual(Object.getPrototypeOf(fresh), Uint8Array.prototype, "a plain Uint8Array, not a Buffer")
      same(fresh, bytes.subarray(2_000))
    }))

  it.scopedLive("the stream is paused once the last pull's size is queued, and flows again when a pull takes it", () =>
    Effect.gen(function*() {
      const { readable } = handFed()
      const pull = yield* readableRange(readable, yield* Effect.scope, options(0, Infinity))
      readable.push(Buffer.alloc(1_000))
      assert.strictEqual((yield* pull(4_000)).byteLength, 1_000, "what came, after the hold")
      for (let i = 0; i < 5; i++) readable.push(Buffer.alloc(1_000))
      yield* ioTurns()
      assert.isTrue(readable.isPaused(), "4 000 bytes are queued: no more is read")
      assert.strictEqual((yield* pull(4_000)).byteLength, 4_000)
      yield* ioTurns()
      assert.isFalse(readable.isPaused())
      assert.strictEqual(readable.readableLength, 0, "the rest was taken into the queue")
    }))

  it.scopedLive("a pull holding bytes returns them after the hold; one holding nothing waits for a piece", () =>
    Effect.gen(function*() {
      const { readable } = handFed()
      const pull = yield* readableRange(readable, yield* Effect.scope, options(0, Infinity, 40))
      const waiting = yield* Effect.fork(pull(10_000))
      yield* Effect.sleep("100 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(waiting)), "nothing has come: no empty pull, no end")
      const started = Date.now()
      readable.push(Buffer.alloc(300))
      const chunk = yield* Fiber.join(waiting)
      assert.strictEqual(chunk.byteLength, 300)
      assert.isAtLeast(Date.now() - started, 30, "it waited for more")
      assert.isBelow(Date.now() - started, 40 + 1_000, "not much longer than the hold")
    }))

  it.scopedLive("a pull that fills up before the hold ends returns at once, whole", () =>
    Effect.gen(function*() {
      const { readable } = handFed()
      const pull = yield* readableRange(readable, yield* Effect.scope, options(0, Infinity, 5_000))
      const waiting = yield* Effect.fork(pull(2_000))
      readable.push(Buffer.alloc(1_000))
      yield* ioTurns()
      readable.push(Buffer.alloc(1_500))
      const chunk = yield* Fiber.join(waiting).pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(chunk.byteLength, 2_000)
      assert.strictEqual((yield* pull(500)).byteLength, 500)
    }))

  it.scopedLive("an interrupted pull loses nothing: its bytes are the next pull's", () =>
    Effect.gen(function*() {
      const bytes = testBytes(6_000, 3)
      const { readable } = handFed()
      const pull = yield* readableRange(readable, yield* Effect.scope, options(0, Infinity, 5_000))
      const waiting = yield* Effect.fork(pull(10_000))
      readable.push(Buffer.from(bytes.subarray(0, 2_000)))
      yield* ioTurns()
      yield* Fiber.interrupt(waiting)
      readable.push(Buffer.from(bytes.subarray(2_000)))
      readable.push(null)
      yield* ioTurns()
      same(yield* pull(10_000), bytes)
      assert.deepStrictEqual(yield* pull(10_000), new Uint8Array(0))
    }))

  it.scopedLive("a stream error after some bytes: they come first, then every pull fails with it", () =>
    Effect.gen(function*() {
      const { readable } = handFed()
      const pull = yield* readableRange(readable, yield* Effect.scope, options(0, Infinity, 5_000))
      readable.push(Buffer.alloc(700))
      yield* ioTurns()
      const cut = new Error("cut")
      readable.destroy(cut)
      yield* ioTurns()
      assert.strictEqual((yield* pull(1_000)).byteLength, 700)
      assert.deepStrictEqual(yield* Effect.flip(pull(1_000)), { _tag: "Failed", cause: cut })
      assert.deepStrictEqual(yield* Effect.flip(pull(1_000)), { _tag: "Failed", cause: cut })
    }))

  it.scopedLive("a stream that failed before the range was made fails the first pull", () =>
    Effect.gen(function*() {
      const { readable } = handFed()
      readable.on("error", () => {})
      const cut = new Error("cut")
      readable.destroy(cut)
      yield* ioTurns()
      const pull = yield* readableRange(readable, yield* Effect.scope, options(0, 100))
      assert.deepStrictEqual(yield* Effect.flip(pull(10)), { _tag: "Failed", cause: cut })
    }))

  it.scopedLive("closing the scope destroys a stream that has not ended and fails a waiting pull", () =>
    Effect.gen(function*() {
      const { readable } = handFed()
      const scope = yield* Scope.make()
      const pull = yield* readableRange(readable, scope, options(0, Infinity))
      readable.push(Buffer.alloc(10))
      const waiting = yield* Effect.fork(pull(100))
      yield* ioTurns()
      yield* Scope.close(scope, Exit.void)
      assert.isTrue(readable.destroyed)
      assert.strictEqual((yield* Fiber.join(waiting)).byteLength, 10, "what it held")
      assert.strictEqual((yield* Effect.flip(pull(100)))._tag, "Failed")
    }))
})
