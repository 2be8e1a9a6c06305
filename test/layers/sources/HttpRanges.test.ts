import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import {
  formatContentRange,
  formatUnsatisfiedRange,
  parseContentLength,
  parseContentRange,
  parseRangeHeader,
  parseUnsatisfiedRange,
  rangeFrom
} from "../../../src/layers/sources/HttpRanges.js"

describe("HttpRanges", () => {
  it.prop("a Range from an offset, and one with an end, parse back", [fc.nat(1e12), fc.nat(1e6)], ([start, length]) => {
    assert.deepStrictEqual(parseRangeHeader(rangeFrom(start)), { start, end: undefined })
    assert.deepStrictEqual(parseRangeHeader(`bytes=${start}-${start + length}`), { start, end: start + length })
  })

  it.effect("a Range that is not one `bytes=start-[end]` is undefined", () =>
    Effect.sync(() => {
      for (const header of [undefined, "", "bytes=5-4", "bytes=-5", "bytes=0-1,5-6", "items=0-", "bytes 0-"]) {
        assert.isUndefined(parseRangeHeader(header), String(header))
      }
      assert.deepStrictEqual(parseRangeHeader(" bytes=7- "), { start: 7, end: undefined })
    }))

  it.prop(
    "a Content-Range round-trips, known total or not",
    [fc.nat(1e12), fc.nat(1e6), fc.nat(1e6)],
    ([start, length, after]) => {
      const end = start + length
      for (const total of [end + 1 + after, undefined]) {
        assert.deepStrictEqual(parseContentRange(formatContentRange({ start, end, total })), { start, end, total })
      }
    }
  )

  it.prop("a 416's Content-Range round-trips", [fc.nat(1e12)], ([total]) => {
    assert.strictEqual(parseUnsatisfiedRange(formatUnsatisfiedRange(total)), total)
  })

  it.effect("unreadable lengths and unsatisfied ranges are undefined", () =>
    Effect.sync(() => {
      assert.strictEqual(parseContentLength(" 42 "), 42)
      for (const value of [undefined, "", "-1", "1.5", "0x10", "99999999999999999999"]) {
        assert.isUndefined(parseContentLength(value), String(value))
      }
      for (const header of [undefined, "bytes */x", "bytes 0-1/2", "*/10"]) {
        assert.isUndefined(parseUnsatisfiedRange(header), String(header))
      }
    }))
})
