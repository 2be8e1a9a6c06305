/**
 * MemoryMonitor: samples process memory on a schedule, keeps the peak and the growth rate. The
 * growth rate feeds the memory manager (fast growth tightens the budget in force) and the
 * pressure level.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/** One reading of process memory, in bytes. */
export interface MemorySample {
  readonly atMs: number
  readonly rss: number
  readonly heapUsed: number
  readonly arrayBuffers: number
}

/** Watches process memory. */
export interface MemoryMonitorShape {
  /** Takes a sample now (also done on the monitor's schedule). */
  readonly sample: Effect.Effect<MemorySample>
  /** The latest sample. */
  readonly latest: Effect.Effect<MemorySample>
  /** The highest RSS seen, in bytes. */
  readonly peakRss: Effect.Effect<number>
  /** RSS growth over the recent window, in MB per second. */
  readonly growthMbPerSec: Effect.Effect<number>
}

/** Watches process memory. */
export class MemoryMonitor extends Context.Tag("streaming-reader/MemoryMonitor")<MemoryMonitor, MemoryMonitorShape>() {}
