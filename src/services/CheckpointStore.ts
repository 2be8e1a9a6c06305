/**
 * CheckpointStore: where checkpoints live (in memory, a SQLite file, PostgreSQL).
 */
import { Context, Schema } from "effect"
import type { Effect, Option } from "effect"
import { SourceIdentity } from "./ByteSource.js"

/** What a checkpoint is kept under: the source and where its bytes go. */
export const CheckpointKey = Schema.Struct({
  source: Schema.String,
  destination: Schema.String
})

/** What a checkpoint is kept under. */
export type CheckpointKey = typeof CheckpointKey.Type

/** How far a read got: every byte before `offset` was acknowledged by the consumer. */
export const Checkpoint = Schema.Struct({
  key: CheckpointKey,
  offset: Schema.Number,
  identity: SourceIdentity,
  chunkSize: Schema.Number,
  updatedAt: Schema.Number
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
