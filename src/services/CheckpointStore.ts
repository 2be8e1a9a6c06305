/**
 * CheckpointStore: where checkpoints live (in memory, a SQLite file, PostgreSQL).
 */
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import { SourceIdentity } from "./ByteSource.js"

/** What a checkpoint is kept under: the source and where its bytes go. */
export const CheckpointKey = Schema.Struct({
  source: Schema.String,
  destination: Schema.String
})

/** What a checkpoint is kept under. */
export type CheckpointKey = typeof CheckpointKey.Type

/**
 * What a destination recorded of itself at a checkpoint, so a resume builds only on bytes this
 * copy wrote: the file's device and inode, and the sha256 of its bytes just before the offset.
 */
export const OutputCheck = Schema.Struct({
  dev: Schema.Number,
  ino: Schema.Number,
  /** How many bytes before the offset `tailSha256` covers. */
  tailLength: Schema.Number,
  tailSha256: Schema.String,
  /**
   * Where the checked bytes end: the checkpoint's `offset` when absent. A copy over several
   * segments checks the end of the last range it wrote, which may lie past `offset`.
   */
  tailEnd: Schema.optional(Schema.Number)
})

/** What a destination recorded of itself at a checkpoint. */
export type OutputCheck = typeof OutputCheck.Type

/** The bytes from `start` (inclusive) to `end` (exclusive) of a source. */
export const ByteRange = Schema.Struct({
  start: Schema.Number,
  end: Schema.Number
})

/** The bytes from `start` to `end` of a source. */
export type ByteRange = typeof ByteRange.Type

/**
 * How far a read got: every byte before `offset` was acknowledged by the consumer, and so was
 * every byte of `ranges` (a read over several segments).
 */
export const Checkpoint = Schema.Struct({
  key: CheckpointKey,
  offset: Schema.Number,
  identity: SourceIdentity,
  chunkSize: Schema.Number,
  updatedAt: Schema.Number,
  /** The destination's check of the bytes it holds before `offset`. */
  output: Schema.optional(OutputCheck),
  /**
   * The sha256 of the source's bytes before `offset`, kept when no strong validator vouches for
   * the source: a resume reads it again from byte 0 and continues only when its first `offset`
   * bytes have this digest.
   */
  prefixSha256: Schema.optional(Schema.String),
  /**
   * The ranges past `offset` acknowledged too, by a read over several segments: sorted, disjoint,
   * not touching each other or `offset`. A resume fetches only what lies outside them; absent
   * (every checkpoint saved before segments existed) means none.
   */
  ranges: Schema.optional(Schema.Array(ByteRange))
})

/** How far a read got. */
export type Checkpoint = typeof Checkpoint.Type

/** The checkpoint store could not be read or written (unreadable, locked or unreachable database). */
export class CheckpointStoreError extends Schema.TaggedError<CheckpointStoreError>()("CheckpointStoreError", {
  operation: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `checkpoint store failed to ${this.operation}: ${this.reason}`
  }
}

/** Where checkpoints live. */
export interface CheckpointStoreShape {
  /** Saves (replaces) the checkpoint for its key. */
  readonly save: (checkpoint: Checkpoint) => Effect.Effect<void, CheckpointStoreError>
  /** Loads the checkpoint for a key, if there is one. */
  readonly load: (key: CheckpointKey) => Effect.Effect<Option.Option<Checkpoint>, CheckpointStoreError>
  /** Deletes the checkpoint for a key (after a read completed). */
  readonly delete: (key: CheckpointKey) => Effect.Effect<void, CheckpointStoreError>
}

/** Where checkpoints live. */
export class CheckpointStore extends Context.Tag("streaming-reader/CheckpointStore")<
  CheckpointStore,
  CheckpointStoreShape
>() {}
