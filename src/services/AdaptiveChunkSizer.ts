/**
 * AdaptiveChunkSizer: chooses the size of the next read from measured latency, throughput
 * and the pressure level, within [min, max].
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/** What one chunk cost: its size and how long the read took. */
export interface ChunkObservation {
  readonly bytes: number
  readonly latencyMs: number
  /**
   * The size the chunk was read with; the current size when absent. A chunk read ahead before the
   * size grew was asked for less: it is whole, not short.
   */
  readonly asked?: number
}

/** The sizing state of one read. */
export interface ChunkSizing {
  /** The size of the next read, always within the bounds. */
  readonly next: Effect.Effect<number>
  /**
   * Records what the last read cost. Fewer `bytes` than `next` gave mean that was all there was to
   * read (a slow source, a rate below the size): the next size moves down to it.
   */
  readonly observe: (observation: ChunkObservation) => Effect.Effect<void>
}

/** Chooses chunk sizes. */
export interface AdaptiveChunkSizerShape {
  /** A sizing state for one read, starting at `initial`. */
  readonly make: (bounds: {
    readonly initial: number
    readonly min: number
    readonly max: number
  }) => Effect.Effect<ChunkSizing>
}

/** Chooses chunk sizes. */
export class AdaptiveChunkSizer extends Context.Tag("streaming-reader/AdaptiveChunkSizer")<
  AdaptiveChunkSizer,
  AdaptiveChunkSizerShape
>() {}
