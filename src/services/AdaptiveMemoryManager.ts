/**
 * AdaptiveMemoryManager: one byte budget shared by every read in the process. A read reserves
 * its bytes before it happens; the reservation is released when the consumer has the chunk.
 * While the process's RSS grows fast the budget in force is tighter than the hard limit.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/** Bytes held against the budget until released. */
export interface MemoryReservation {
  /** Bytes granted: what was asked, or less when the ask exceeds what the budget can ever give. */
  readonly bytes: number
  /** Gives the bytes back; releasing twice is harmless. */
  readonly release: Effect.Effect<void>
}

/** The shared budget. */
export interface AdaptiveMemoryManagerShape {
  /** The hard limit in bytes; never exceeded. */
  readonly limit: number
  /** The budget in force now: the hard limit, tightened while RSS grows fast; never above `limit`. */
  readonly effectiveLimit: Effect.Effect<number>
  /** Reserves bytes, waiting while the budget in force is spent. */
  readonly reserve: (bytes: number) => Effect.Effect<MemoryReservation>
  /**
   * Reserves bytes if they fit the budget in force now and nobody waits; `undefined` otherwise.
   * Never waits; synchronous, for the reader's read ahead (once per chunk).
   */
  readonly unsafeTryReserve: (bytes: number) => MemoryReservation | undefined
  /** Bytes reserved right now. */
  readonly inUse: Effect.Effect<number>
  /** Bytes reserved right now, read synchronously (once per chunk). */
  readonly unsafeInUse: () => number
}

/** The shared budget. */
export class AdaptiveMemoryManager extends Context.Tag("streaming-reader/AdaptiveMemoryManager")<
  AdaptiveMemoryManager,
  AdaptiveMemoryManagerShape
>() {}
