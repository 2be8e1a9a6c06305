import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import type { Segment } from "../../../src/layers/reader/SegmentPlan.js"
import { addRange, gapsOf, makeSegmentPlan } from "../../../src/layers/reader/SegmentPlan.js"
import type { ByteRange } from "../../../src/services/CheckpointStore.js"

const KiB = 1024

/** Sorted, disjoint, possibly touching gaps built from (skip, length) pairs; some may be empty. */
const arbitraryGaps = fc.array(
  fc.tuple(fc.nat(512 * KiB), fc.oneof(fc.nat(4 * KiB), fc.nat(3 * 1024 * KiB))),
  { minLength: 0, maxLength: 6 }
).map((pairs) => {
  const gaps: Array<ByteRange> = []
  let position = 0
  for (const [skip, length] of pairs) {
    const start = position + skip
    gaps.push({ start, end: start + length })
    position = start + length
  }
  return gaps
})

/** One step of a simulated read: advance a segment (by a share of what it has left) or open one more connection. */
const arbitraryStep = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("advance" as const),
      pick: fc.nat(),
      share: fc.double({ min: 0.1, max: 1, noNaN: true })
    })
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("claim" as const) }) }
)

interface Run {
  /** Every byte range a segment fetched, in fetch order. */
  readonly fetched: Array<ByteRange>
  /** Every range the plan handed out (`start`-`end` when claimed). */
  readonly handedOut: Array<ByteRange>
  /** Every segment handed out, as it ended (its end moved closer by steals). */
  readonly segments: ReadonlyArray<Segment>
  /** The remaining ranges of segments that a steal shortened, right after the steal. */
  readonly shortened: Array<ByteRange>
  readonly planned: number
  /** How many claims were answered before the plan was drained. */
  readonly claims: number
}

/**
 * Drives a plan the way the workers do: each worker holds one segment and advances it; a worker
 * whose segment is done claims another; now and then a new worker joins. The steps are taken from
 * `steps` (cycled), so the interleaving is random; the run ends when every worker finds nothing
 * to claim.
 */
const simulate = (
  gaps: ReadonlyArray<ByteRange>,
  connections: number,
  minSplit: number,
  steps: ReadonlyArray<
    { readonly kind: "advance"; readonly pick: number; readonly share: number } | { readonly kind: "claim" }
  >
): Run => {
  const plan = makeSegmentPlan(gaps, connections, minSplit)
  const fetched: Array<ByteRange> = []
  const handedOut: Array<ByteRange> = []
  const shortened: Array<ByteRange> = []
  let claims = 0
  const held: Array<Segment> = []
  const segments: Array<Segment> = []
  const claim = (): Segment | undefined => {
    const ends = held.map((segment) => segment.end)
    const segment = plan.claim()
    held.forEach((other, index) => {
      if (other.end !== ends[index]) shortened.push({ start: other.position, end: other.end })
    })
    if (segment !== undefined) {
      claims++
      handedOut.push({ start: segment.start, end: segment.end })
      assert.strictEqual(segment.position, segment.start, "a segment is handed out at its start")
      held.push(segment)
      segments.push(segment)
    }
    return segment
  }
  for (let index = 0; index < plan.planned; index++) claim()
  let step = 0
  let guard = 0
  while (held.length > 0) {
    assert.isBelow(guard++, 1_000_000, "the simulation ends")
    const next = steps.length === 0 ? { kind: "advance" as const, pick: 0, share: 1 } : steps[step++ % steps.length]!
    // A new worker joins, then a held segment advances (so every step makes progress).
    if (next.kind === "claim") claim()
    const index = (next.kind === "advance" ? next.pick : 0) % held.length
    const segment = held[index]!
    const left = segment.end - segment.position
    const bytes = Math.max(1, Math.ceil(left * (next.kind === "advance" ? next.share : 1)))
    if (left > 0) {
      fetched.push({ start: segment.position, end: segment.position + bytes })
      segment.position += bytes
    }
    if (segment.position >= segment.end) {
      held.splice(index, 1)
      // The worker that finished takes another range, as the real worker loop does.
      claim()
    }
  }
  assert.strictEqual(plan.remaining(), 0, "nothing is left once no worker finds a range")
  assert.strictEqual(plan.active().length, 0)
  assert.isUndefined(plan.claim(), "a drained plan hands out nothing")
  return { fetched, handedOut, segments, shortened, planned: plan.planned, claims }
}

/** Merges sorted ranges that touch or overlap. */
const merged = (ranges: ReadonlyArray<ByteRange>): Array<ByteRange> => {
  const out: Array<ByteRange> = []
  for (const range of ranges) {
    if (range.end <= range.start) continue
    const last = out[out.length - 1]
    if (last !== undefined && range.start <= last.end) {
      out[out.length - 1] = { start: last.start, end: Math.max(last.end, range.end) }
    } else out.push({ ...range })
  }
  return out
}

const byStart = (a: ByteRange, b: ByteRange) => a.start - b.start

/** The runs of set bits in `bitmap` from `start` to `end`, as ranges. */
const runsOf = (bitmap: ReadonlyArray<boolean>, start = 0, end = bitmap.length, value = true): Array<ByteRange> => {
  const out: Array<ByteRange> = []
  let runStart: number | undefined
  for (let index = start; index < end; index++) {
    if (bitmap[index] === value) runStart ??= index
    else if (runStart !== undefined) {
      out.push({ start: runStart, end: index })
      runStart = undefined
    }
  }
  if (runStart !== undefined) out.push({ start: runStart, end })
  return out
}

describe("SegmentPlan", () => {
  it.prop(
    "every byte of the gaps is fetched by exactly one segment, in any interleaving",
    [
      arbitraryGaps,
      fc.integer({ min: 1, max: 16 }),
      fc.integer({ min: 1, max: 512 * KiB }),
      fc.array(arbitraryStep, { maxLength: 60 })
    ],
    ([gaps, connections, minSplit, steps]) => {
      const run = simulate(gaps, connections, minSplit, steps)
      const pieces = [...run.fetched].sort(byStart)
      for (let index = 1; index < pieces.length; index++) {
        assert.isAtMost(pieces[index - 1]!.end, pieces[index]!.start, "no byte is fetched twice")
      }
      assert.deepStrictEqual(merged(pieces), merged(gaps), "the bytes fetched are the gaps, no more, no less")
      // The segments, as steals left them, never overlap and cover the gaps.
      const handed = run.segments.map((segment) => ({ start: segment.start, end: segment.end })).sort(byStart)
      for (let index = 1; index < handed.length; index++) {
        assert.isAtMost(handed[index - 1]!.end, handed[index]!.start, "no two segments share a byte")
      }
      assert.deepStrictEqual(merged(handed), merged(gaps))
      for (const segment of run.segments) {
        assert.strictEqual(segment.position, segment.end, "every segment was read to its end")
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "planned: at most the connections (or the gaps, when there are more), at least the gaps",
    [arbitraryGaps, fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 512 * KiB })],
    ([gaps, connections, minSplit]) => {
      const nonEmpty = gaps.filter((gap) => gap.end > gap.start).length
      const plan = makeSegmentPlan(gaps, connections, minSplit)
      assert.isAtMost(plan.planned, Math.max(connections, nonEmpty))
      assert.isAtLeast(plan.planned, nonEmpty)
      if (nonEmpty <= connections) assert.isAtMost(plan.planned, connections)
      const total = gaps.reduce((sum, gap) => sum + Math.max(0, gap.end - gap.start), 0)
      assert.strictEqual(plan.remaining(), total)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("one gap over 8 connections with a 64 KiB minimum is split in 8 aligned pieces", () => {
    const plan = makeSegmentPlan([{ start: 0, end: 4 * 1024 * KiB }], 8, 64 * KiB)
    assert.strictEqual(plan.planned, 8)
    const pieces: Array<ByteRange> = []
    for (let segment = plan.claim(); segment !== undefined && pieces.length < 8; segment = plan.claim()) {
      pieces.push({ start: segment.start, end: segment.end })
    }
    assert.deepStrictEqual(merged([...pieces].sort(byStart)), [{ start: 0, end: 4 * 1024 * KiB }])
    for (const piece of pieces) assert.strictEqual(piece.start % (64 * KiB), 0)
  })

  it.prop(
    "no split leaves a piece below minSplit (gaps already smaller are handed out whole)",
    [
      arbitraryGaps,
      fc.integer({ min: 1, max: 16 }),
      fc.integer({ min: 64 * KiB, max: 512 * KiB }),
      fc.array(arbitraryStep, { maxLength: 60 })
    ],
    ([gaps, connections, minSplit, steps]) => {
      const run = simulate(gaps, connections, minSplit, steps)
      const whole = new Set(gaps.map((gap) => `${gap.start}-${gap.end}`))
      for (const piece of run.handedOut) {
        if (whole.has(`${piece.start}-${piece.end}`)) continue
        assert.isAtLeast(
          piece.end - piece.start,
          minSplit,
          `piece ${piece.start}-${piece.end} of a split (minSplit ${minSplit})`
        )
      }
      for (const rest of run.shortened) {
        assert.isAtLeast(
          rest.end - rest.start,
          minSplit,
          `what a steal left ${rest.start}-${rest.end} (minSplit ${minSplit})`
        )
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "no split leaves a piece below minSplit, for minSplit a multiple of 64 KiB",
    [
      arbitraryGaps,
      fc.integer({ min: 1, max: 16 }),
      fc.integer({ min: 1, max: 8 }),
      fc.array(arbitraryStep, { maxLength: 60 })
    ],
    ([gaps, connections, units, steps]) => {
      const minSplit = units * 64 * KiB
      const run = simulate(gaps, connections, minSplit, steps)
      const whole = new Set(gaps.map((gap) => `${gap.start}-${gap.end}`))
      for (const piece of run.handedOut) {
        if (whole.has(`${piece.start}-${piece.end}`)) continue
        assert.isAtLeast(piece.end - piece.start, minSplit)
      }
      for (const rest of run.shortened) assert.isAtLeast(rest.end - rest.start, minSplit)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("a 200 KiB gap with a 100 KiB minimum is split in two pieces of at least 100 KiB", () => {
    const plan = makeSegmentPlan([{ start: 0, end: 200 * KiB }], 2, 100 * KiB)
    const first = plan.claim()!
    const second = plan.claim()!
    assert.isAtLeast(first.end - first.start, 100 * KiB, `first piece ${first.start}-${first.end}`)
    assert.isAtLeast(second.end - second.start, 100 * KiB, `second piece ${second.start}-${second.end}`)
  })
})

describe("gapsOf and addRange", () => {
  const universe = 160
  const arbitraryBitmap = fc.array(fc.boolean(), { minLength: universe, maxLength: universe })

  it.prop(
    "gapsOf is the complement of the done ranges inside [start, end), as a bitmap says",
    [arbitraryBitmap, fc.nat(universe), fc.nat(universe), fc.array(fc.nat(universe), { maxLength: 6 })],
    ([bitmap, a, b, cuts]) => {
      const start = Math.min(a, b)
      const end = Math.max(a, b)
      // Done ranges: the runs of the bitmap, some cut into touching pieces.
      const done: Array<ByteRange> = []
      for (const run of runsOf(bitmap)) {
        let position = run.start
        for (const cut of [...cuts].sort((x, y) => x - y)) {
          if (cut > position && cut < run.end) {
            done.push({ start: position, end: cut })
            position = cut
          }
        }
        done.push({ start: position, end: run.end })
      }
      assert.deepStrictEqual(gapsOf(start, end, done), runsOf(bitmap, start, end, false))
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "addRange keeps sorted, disjoint, non-touching ranges equal to the bitmap of everything added",
    [fc.array(fc.tuple(fc.nat(universe), fc.nat(40)), { maxLength: 20 })],
    ([adds]) => {
      const bitmap: Array<boolean> = Array.from({ length: universe + 40 }, () => false)
      const ranges: Array<ByteRange> = []
      for (const [start, length] of adds) {
        addRange(ranges, start, start + length)
        for (let index = start; index < start + length; index++) bitmap[index] = true
        for (let index = 1; index < ranges.length; index++) {
          assert.isBelow(ranges[index - 1]!.end, ranges[index]!.start, "sorted, disjoint and not touching")
        }
        for (const range of ranges) assert.isBelow(range.start, range.end, "no empty range")
        assert.deepStrictEqual(ranges, runsOf(bitmap))
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("addRange ignores an empty or reversed range", () => {
    const ranges: Array<ByteRange> = [{ start: 10, end: 20 }]
    addRange(ranges, 30, 30)
    addRange(ranges, 40, 35)
    assert.deepStrictEqual(ranges, [{ start: 10, end: 20 }])
  })
})
