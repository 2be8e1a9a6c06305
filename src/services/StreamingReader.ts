/**
 * StreamingReader: the public interface. `read(source, options)` is one typed-error stream of
 * the source's bytes; the basic and the enhanced layers implement the same tag.
 */
import { Context, Schema } from "effect"
import type { Effect, Scope, Stream } from "effect"
import type { SourceError, SourceIdentity, SourceInput } from "./ByteSource.js"
import type { Checkpoint, CheckpointStoreError, OutputCheck } from "./CheckpointStore.js"
import type { InvalidOptions, ReadOptionsInput } from "./ReadOptions.js"
import type { RetriesExhausted } from "./StreamRecoveryManager.js"

/** The bytes read do not have the checksum the caller expected. */
export class IntegrityMismatch extends Schema.TaggedError<IntegrityMismatch>()("IntegrityMismatch", {
  source: Schema.String,
  expected: Schema.String,
  actual: Schema.String
}) {
  override get message() {
    return `sha256 mismatch for ${this.source}: expected ${this.expected}, got ${this.actual}`
  }
}

/** Every failure a read can end with. */
export type ReadError = SourceError | InvalidOptions | RetriesExhausted | CheckpointStoreError | IntegrityMismatch

/** An opened read: where it starts and the stream of the bytes from there. */
export interface ReadSession {
  /** The source's name, credentials redacted. */
  readonly source: string
  /** The offset of the first byte the stream emits: 0, or the checkpoint a resume starts from. */
  readonly startOffset: number
  /** The source's identity as first seen. */
  readonly identity: SourceIdentity
  /**
   * The bytes from `startOffset` to the end, in order, each exactly once. A chunk counts as
   * acknowledged (and may be checkpointed) once the consumer pulls the next one.
   */
  readonly stream: Stream.Stream<Uint8Array, ReadError>
}

/** What a consumer asks the reader to do at points of a read. */
export interface ReadHooks {
  /**
   * Runs before each checkpoint is saved: a consumer that writes to a file flushes it to disk
   * here (`--durable`), so a checkpoint never vouches for bytes a power cut could lose.
   */
  readonly beforeCheckpoint?: Effect.Effect<void>
  /**
   * Given the checkpoint found for this read, how many of its bytes the destination still holds
   * as it wrote them: the checkpoint's offset, or less (0 to start again). The read resumes there.
   */
  readonly resumeOffset?: (checkpoint: Checkpoint) => Effect.Effect<number>
  /** What a checkpoint at `offset` records of the destination, so a resume can check it with `resumeOffset`. */
  readonly describeOutput?: (offset: number) => Effect.Effect<OutputCheck>
}

/** Reads byte sources as streams. */
export interface StreamingReaderShape {
  /** Opens a read: validates options, opens the source, finds the checkpoint to resume from. */
  readonly open: (
    source: SourceInput,
    options?: ReadOptionsInput,
    hooks?: ReadHooks
  ) => Effect.Effect<ReadSession, ReadError, Scope.Scope>
  /** The source's bytes as one stream; the source is released when the stream ends, fails or is interrupted. */
  readonly read: (source: SourceInput, options?: ReadOptionsInput) => Stream.Stream<Uint8Array, ReadError>
}

/** Reads byte sources as streams. */
export class StreamingReader extends Context.Tag("streaming-reader/StreamingReader")<
  StreamingReader,
  StreamingReaderShape
>() {}
