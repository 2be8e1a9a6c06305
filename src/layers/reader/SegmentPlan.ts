/**
 * The plan of a read over several segments: which ranges of the source are still to be fetched,
 * and which connection fetches each. The ranges left are handed out first, split so that every
 * connection starts with one; a connection that finishes its range then takes the second half
 * of the largest range another one still has to fetch (work stealing), as long as both halves
 * are at least the minimum split size.
 */
import type { ByteRange } from "../../services/CheckpointStore.js"

/** A range one connection fetches: it has fetched up to `position`; `end` may move closer (stolen). */
export interface Segment {
  /** The offset the range started at when it was handed out. */
  readonly start: number
  /** The next byte to fetch. */
  position: number
  /** Where the range ends (exclusive). */
  end: number
}

/** The ranges of a read over segments and who fetches them. */
export interface SegmentPlan {
  /**
   * A range for a connection: one not handed out yet, else (with `steal`, the default) half of
   * the largest remaining; none when all are taken.
   */
  readonly claim: (steal?: boolean) => Segment | undefined
  /** The segments handed out that still have bytes to fetch. */
  readonly active: () => ReadonlyArray<Segment>
  /** The bytes still to fetch, handed out or not. */
  readonly remaining: () => number
  /** How many ranges the plan started with: the connections worth opening. */
  readonly planned: number
}

/** Half of `length`, rounded down to a multiple of `align` when both halves stay at least `min` long. */
const halfOf = (length: number, align: number, min: number): number => {
  const half = Math.floor(length / 2)
  const aligned = half - (half % align)
  return aligned >= min && length - aligned >= min ? aligned : half
}

/** Splits are made at multiples of this many bytes from a range's start (chunk-friendly offsets). */
const splitAlign = 64 * 1024

/**
 * Plans the fetch of `gaps` (sorted, disjoint) over up to `connections`: the gaps are split in
 * halves, largest first, until there are `connections` ranges or none is at least twice
 * `minSplit` long.
 */
export const makeSegmentPlan = (
  gaps: ReadonlyArray<ByteRange>,
  connections: number,
  minSplit: number
): SegmentPlan => {
  const pending: Array<ByteRange> = gaps.filter((gap) => gap.end > gap.start).map((gap) => ({ ...gap }))
  while (pending.length < connections) {
    let largest = -1
    for (let index = 0; index < pending.length; index++) {
      const length = pending[index]!.end - pending[index]!.start
      if (length >= 2 * minSplit && (largest === -1 || length > pending[largest]!.end - pending[largest]!.start)) {
        largest = index
      }
    }
    if (largest === -1) break
    const gap = pending[largest]!
    const middle = gap.start + halfOf(gap.end - gap.start, splitAlign, minSplit)
    pending.splice(largest, 1, { start: gap.start, end: middle }, { start: middle, end: gap.end })
  }
  const segments: Array<Segment> = []
  const planned = pending.length

  const steal = (): Segment | undefined => {
    let victim: Segment | undefined
    for (const segment of segments) {
      const left = segment.end - segment.position
      if (left >= 2 * minSplit && (victim === undefined || left > victim.end - victim.position)) victim = segment
    }
    if (victim === undefined) return undefined
    const middle = victim.position + halfOf(victim.end - victim.position, splitAlign, minSplit)
    const taken: Segment = { start: middle, position: middle, end: victim.end }
    victim.end = middle
    return taken
  }

  return {
    claim: (stealing = true) => {
      const next = pending.shift()
      const segment = next === undefined
        ? (stealing ? steal() : undefined)
        : { start: next.start, position: next.start, end: next.end }
      if (segment !== undefined) segments.push(segment)
      for (let index = segments.length - 1; index >= 0; index--) {
        if (segments[index]!.position >= segments[index]!.end) segments.splice(index, 1)
      }
      return segment
    },
    active: () => segments.filter((segment) => segment.position < segment.end),
    remaining: () =>
      pending.reduce((sum, gap) => sum + gap.end - gap.start, 0) +
      segments.reduce((sum, segment) => sum + Math.max(0, segment.end - segment.position), 0),
    planned
  }
}

/** The parts of `[start, end)` outside `done` (sorted, disjoint). */
export const gapsOf = (start: number, end: number, done: ReadonlyArray<ByteRange>): Array<ByteRange> => {
  const gaps: Array<ByteRange> = []
  let position = start
  for (const range of done) {
    if (range.end <= position) continue
    if (range.start >= end) break
    if (range.start > position) gaps.push({ start: position, end: range.start })
    position = Math.max(position, range.end)
  }
  if (position < end) gaps.push({ start: position, end })
  return gaps
}

/** Adds `[start, end)` to `ranges` (sorted, disjoint, not touching), merging what it touches; in place. */
export const addRange = (ranges: Array<ByteRange>, start: number, end: number): void => {
  if (end <= start) return
  let index = 0
  while (index < ranges.length && ranges[index]!.end < start) index++
  let merged: ByteRange = { start, end }
  let count = 0
  while (index + count < ranges.length && ranges[index + count]!.start <= end) {
    const range = ranges[index + count]!
    merged = { start: Math.min(merged.start, range.start), end: Math.max(merged.end, range.end) }
    count++
  }
  ranges.splice(index, count, merged)
}
