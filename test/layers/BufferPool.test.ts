import { assert, describe, it } from "@effect/vitest"
import { makeBufferPool } from "../../src/layers/BufferPool.js"

describe("BufferPool", () => {
  it("hands a given-back buffer out again for the same size, a new one for another size", () => {
    const pool = makeBufferPool(1024 * 1024)
    const first = pool.take(64 * 1024)
    assert.strictEqual(first.byteLength, 64 * 1024)
    pool.give(first)
    assert.strictEqual(pool.freeBytes(), 64 * 1024)
    assert.strictEqual(pool.take(64 * 1024), first)
    assert.notStrictEqual(pool.take(32 * 1024), first)
    assert.strictEqual(pool.freeBytes(), 0)
  })

  it("never keeps more free bytes than its cap, and clear drops them all", () => {
    const pool = makeBufferPool(100 * 1024)
    const buffers = Array.from({ length: 4 }, () => pool.take(32 * 1024))
    buffers.forEach(pool.give)
    assert.strictEqual(pool.freeBytes(), 96 * 1024, "the fourth buffer is left to the garbage collector")
    assert.strictEqual(pool.clear(), 96 * 1024)
    assert.strictEqual(pool.freeBytes(), 0)
    assert.isFalse(buffers.includes(pool.take(32 * 1024)))
  })
})
