import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc, Fiber, Option, Queue, Scope, TestClock } from "effect"
import { defaultHoldMs, rechunk } from "../../../src/layers/sources/rechunk.js"
import { concat, testBytes } from "../../support/files.js"

/** A source handing out `bytes` in pieces of the given sizes, then failing with "cut" once `failAt` pieces are out. */
const pieces = (bytes: Uint8Array, sizes: ReadonlyArray<number>, failAt = Infinity) => {
  let position = 0
  let served = 0
  return Effect.suspend(() => {
    if (served >= failAt) return Effect.fail("cut" as const)
    if (position >= bytes.length) return Effect.succeed(undefined)
    const size = sizes[served++ % sizes.length]!
    const piece = bytes.subarray(position, Math.min(bytes.length, position + size))
    position += piece.length
    return Effect.succeed(piece)
  })
}

/** A source whose pieces the test hands out through a queue: a piece, the end, or a failure. */
const queued = Effect.gen(function*() {
  const queue = yield* Queue.unbounded<Uint8Array | undefined | "cut">()
  const pullNext = Effect.flatMap(
    Queue.take(queue),
    (piece): Effect.Effect<Uint8Array | undefined, "cut"> =>
      piece === "cut" ? Effect.fail(piece) : Effect.succeed(piece)
  )
  /** Negative while the source is asked for a piece it does not have yet. */
  const size = Queue.size(queue)
  return { queue, pullNext, size }
})

/** Lets forked fibers run until they block. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

/**
 * `effect`, failing when it is not done within 5 s of real time: what the TestClock does not drive
 * (a turn of the event loop's I/O) still gets to run, and a pull that never returns fails the test.
 */
const soon = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.raceFirst(
    effect,
    Effect.async<never>((resume) => {
      const timer = setTimeout(() => resume(Effect.dieMessage("not done within 5 s")), 5_000)
      return Effect.sync(() => clearTimeout(timer))
    })
  )

const same = (actual: Uint8Array, expected: Uint8Array) =>
  assert.isTrue(Buffer.from(actual).equals(Buffer.from(expected)))

describe("rechunk", () => {
  it.effect.prop(
    "any pieces pulled at any sizes give the bytes in order, each pull exactly its size but the last",
    {
      length: fc.integer({ min: 0, max: 20_000 }),
      sizes: fc.array(fc.integer({ min: 1, max: 3_000 }), { minLength: 1, maxLength: 8 }),
      pulls: fc.array(fc.integer({ min: 1, max: 5_000 }), { minLength: 1, maxLength: 8 })
    },
    ({ length, pulls, sizes }) =>
      Effect.gen(function*() {
        const bytes = testBytes(length, length + 1)
        const pull = rechunk(pieces(bytes, sizes))
        const out: Array<Uint8Array> = []
        for (let i = 0;; i++) {
          const asked = pulls[i % pulls.length]!
          const chunk = yield* pull(asked)
          if (chunk.length === 0) break
          out.push(chunk)
          if (chunk.length < asked) {
            assert.strictEqual((yield* pull(1)).length, 0, "only the last pull is short")
            break
          }
        }
        assert.isTrue(concat(out).equals(Buffer.from(bytes)))
      })
  )

  it.effect("pieces joined for one pull go into the caller's buffer", () =>
    Effect.gen(function*() {
      const bytes = testBytes(10_000, 3)
      const pull = rechunk(pieces(bytes, [3_000]))
      const into = new Uint8Array(8_000)
      const joined = yield* pull(7_000, into)
      assert.strictEqual(joined.buffer, into.buffer)
      assert.isTrue(Buffer.from(joined).equals(Buffer.from(bytes.subarray(0, 7_000))))
      const single = yield* pull(2_000, into)
      assert.notStrictEqual(single.buffer, into.buffer, "a slice of one piece needs no copy")
    }))

  it.effect("a failure after some bytes hands those bytes out, and the next pull fails", () =>
    Effect.gen(function*() {
      const bytes = testBytes(10_000, 4)
      const pull = rechunk(pieces(bytes, [1_000], 3))
      const partial = yield* pull(5_000)
      assert.isTrue(Buffer.from(partial).equals(Buffer.from(bytes.subarray(0, 3_000))))
      assert.strictEqual(yield* Effect.flip(pull(5_000)), "cut")
      assert.strictEqual(yield* Effect.flip(pull(5_000)), "cut")
    }))

  it.effect("pieces that are already there are taken at once: a fast source gives full chunks without any wait", () =>
    Effect.gen(function*() {
      const bytes = testBytes(8_000, 5)
      const { pullNext, queue } = yield* queued
      for (let at = 0; at < bytes.length; at += 1_000) yield* Queue.offer(queue, bytes.subarray(at, at + 1_000))
      const pull = rechunk(pullNext)
      same(yield* soon(pull(5_000)), bytes.subarray(0, 5_000))
      assert.strictEqual(yield* TestClock.currentTimeMillis, 0)
      const rest = yield* Effect.fork(pull(5_000))
      yield* Queue.offer(queue, undefined)
      same(yield* soon(Fiber.join(rest)), bytes.subarray(5_000))
      assert.strictEqual((yield* soon(pull(5_000))).length, 0)
    }))

  it.effect("a pull that holds nothing waits for the first piece as long as it takes", () =>
    Effect.gen(function*() {
      const { pullNext, queue } = yield* queued
      const pull = rechunk(pullNext)
      const fiber = yield* Effect.fork(pull(100))
      yield* settle
      yield* TestClock.adjust("10 minutes")
      assert.isFalse(yield* isDone(fiber), "nothing to return yet")
      yield* Queue.offer(queue, testBytes(100, 2))
      same(yield* soon(Fiber.join(fiber)), testBytes(100, 2))
    }))

  it.effect("slow pieces: a pull returns what has arrived after the hold, and the piece asked for stays in flight", () =>
    Effect.gen(function*() {
      const bytes = testBytes(3_000, 9)
      const { pullNext, queue, size } = yield* queued
      const pull = rechunk(pullNext)
      const fiber = yield* Effect.fork(pull(10_000))
      yield* Queue.offer(queue, bytes.subarray(0, 1_000))
      yield* settle
      yield* TestClock.adjust(defaultHoldMs - 1)
      assert.isFalse(yield* isDone(fiber), "still within the hold")
      yield* TestClock.adjust(1)
      same(yield* soon(Fiber.join(fiber)), bytes.subarray(0, 1_000))
      assert.strictEqual(yield* size, -1, "the next piece is still being read, not abandoned")
      yield* Queue.offer(queue, bytes.subarray(1_000))
      yield* settle
      same(yield* soon(pull(1_500)), bytes.subarray(1_000, 2_500))
      same(yield* soon(pull(500)), bytes.subarray(2_500))
      assert.strictEqual(yield* size, 0, "asked for nothing more")
    }))

  it.effect("pieces that come within the hold join the chunk; the hold counts from the first wait, not from each piece", () =>
    Effect.gen(function*() {
      const bytes = testBytes(3_000, 10)
      const { pullNext, queue } = yield* queued
      const pull = rechunk(pullNext)
      const fiber = yield* Effect.fork(pull(10_000))
      for (const at of [0, 1_000, 2_000]) {
        if (at > 0) yield* TestClock.adjust(20)
        yield* Queue.offer(queue, bytes.subarray(at, at + 1_000))
        yield* settle
      }
      assert.isFalse(yield* isDone(fiber))
      yield* TestClock.adjust(defaultHoldMs - 40)
      same(yield* soon(Fiber.join(fiber)), bytes)
    }))

  it.effect.prop(
    "whatever the timing of the pieces, no byte is lost or repeated and every pull is 1 to its size",
    {
      length: fc.integer({ min: 1, max: 8_000 }),
      sizes: fc.array(fc.integer({ min: 200, max: 3_000 }), { minLength: 1, maxLength: 6 }),
      gaps: fc.array(fc.integer({ min: 0, max: 3 * defaultHoldMs }), { minLength: 1, maxLength: 6 }),
      pulls: fc.array(fc.integer({ min: 1, max: 5_000 }), { minLength: 1, maxLength: 6 })
    },
    ({ gaps, length, pulls, sizes }) =>
      Effect.gen(function*() {
        const bytes = testBytes(length, length + 7)
        const { pullNext, queue, size } = yield* queued
        const pull = rechunk(pullNext)
        const into = new Uint8Array(5_000)
        const consumer = yield* Effect.fork(Effect.gen(function*() {
          const out: Array<Uint8Array> = []
          for (let i = 0;; i++) {
            const asked = pulls[i % pulls.length]!
            const chunk = yield* pull(asked, into)
            assert.isAtMost(chunk.length, asked)
            if (chunk.length === 0) return out
            out.push(Uint8Array.from(chunk))
          }
        }))
        for (let at = 0, i = 0; at < length; i++) {
          const piece = bytes.subarray(at, at + sizes[i % sizes.length]!)
          at += piece.length
          yield* Queue.offer(queue, piece)
          yield* settle
          yield* TestClock.adjust(gaps[i % gaps.length]!)
        }
        yield* Queue.offer(queue, undefined)
        same(concat(yield* soon(Fiber.join(consumer))), bytes)
        assert.strictEqual(yield* size, 0)
      }),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect("a failure while a pull waits hands out what it holds at once; the next pull fails", () =>
    Effect.gen(function*() {
      const { pullNext, queue } = yield* queued
      const pull = rechunk(pullNext)
      const fiber = yield* Effect.fork(pull(10_000))
      yield* Queue.offer(queue, testBytes(1_000, 3))
      yield* settle
      yield* Queue.offer(queue, "cut")
      same(yield* soon(Fiber.join(fiber)), testBytes(1_000, 3))
      assert.strictEqual(yield* soon(Effect.flip(pull(10_000))), "cut")
    }))

  it.effect("a failure of the piece left in flight is the next pull's failure", () =>
    Effect.gen(function*() {
      const { pullNext, queue } = yield* queued
      const pull = rechunk(pullNext)
      const fiber = yield* Effect.fork(pull(10_000))
      yield* Queue.offer(queue, testBytes(1_000, 3))
      yield* settle
      yield* TestClock.adjust(defaultHoldMs)
      assert.strictEqual((yield* soon(Fiber.join(fiber))).length, 1_000)
      yield* Queue.offer(queue, "cut")
      yield* settle
      assert.strictEqual(yield* soon(Effect.flip(pull(10_000))), "cut")
    }))

  it.effect("interrupting a pull that holds bytes interrupts the piece it waits for and keeps the bytes", () =>
    Effect.gen(function*() {
      const bytes = testBytes(2_000, 4)
      const { pullNext, queue, size } = yield* queued
      const pull = rechunk(pullNext)
      const fiber = yield* Effect.fork(pull(10_000))
      yield* Queue.offer(queue, bytes.subarray(0, 1_000))
      yield* settle
      assert.strictEqual(yield* size, -1, "the next piece is being read")
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(fiber)))
      assert.strictEqual(yield* size, 0, "nothing reads the source any more")
      yield* Queue.offer(queue, bytes.subarray(1_000))
      same(yield* soon(pull(2_000)), bytes)
    }))

  it.effect("interrupting a pull that waits for the piece left in flight interrupts that piece", () =>
    Effect.gen(function*() {
      const { pullNext, queue, size } = yield* queued
      const pull = rechunk(pullNext)
      const first = yield* Effect.fork(pull(10_000))
      yield* Queue.offer(queue, testBytes(1_000, 6))
      yield* settle
      yield* TestClock.adjust(defaultHoldMs)
      yield* soon(Fiber.join(first))
      const second = yield* Effect.fork(pull(10_000))
      yield* settle
      assert.strictEqual(yield* size, -1)
      yield* Fiber.interrupt(second)
      assert.strictEqual(yield* size, 0)
    }))

  it.effect("closing the source's scope interrupts a piece left in flight", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { pullNext, queue, size } = yield* queued
      const pull = rechunk(pullNext, { scope })
      const fiber = yield* Effect.fork(pull(10_000))
      yield* Queue.offer(queue, testBytes(1_000, 8))
      yield* settle
      yield* TestClock.adjust(defaultHoldMs)
      yield* soon(Fiber.join(fiber))
      assert.strictEqual(yield* size, -1, "left in flight by the early return")
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* size, 0)
    }))
})
