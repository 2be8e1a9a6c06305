import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { rechunk } from "../../../src/layers/sources/rechunk.js"
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
        for (let i = 0; ; i++) {
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
})
