/**
 * StreamingReader: the public interface. `read(source, options)` is one typed-error stream of
 * the source's bytes; the basic and the enhanced layers implement the same tag.
 */
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Sink from "effect/Sink"
import type * as Stream from "effect/Stream"
import type { SourceError, SourceIdentity, SourceInput } from "./ByteSource.js"
import type { ByteRange, Checkpoint, CheckpointStoreError, OutputCheck } from "./CheckpointStore.js"
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

/** A run of the source's bytes and where it starts in the source. */
export interface SourceChunk {
  /** The offset in the source of `bytes[0]`. */
  readonly offset: number
  readonly bytes: Uint8Array
}

/** Where a read starts and which version of the source it expects there. */
export interface ReadStart {
  /** The offset of the first byte to read. */
  readonly offset: number
  /** The version the bytes before `offset` were read from; needed when `offset > 0`. */
  readonly identity?: SourceIdentity | undefined
  /** For a source without a strong validator: the sha256 of its first `offset` bytes. */
  readonly prefixSha256?: string | undefined
  /** Ranges past `offset` already handled (a read over segments): a resume over segments fetches only the rest. */
  readonly ranges?: ReadonlyArray<ByteRange> | undefined
}

/**
 * An opened read. The stream emits chunks with their offsets; the consumer says what it has
 * durably handled with `acknowledge`, and checkpoints only ever record acknowledged bytes.
 */
export interface ReadSession {
  /** The source's name, credentials redacted. */
  readonly source: string
  /** The offset of the first byte the stream emits: 0, or the checkpoint a resume starts from. */
  readonly startOffset: number
  /** The source's identity as first seen. */
  readonly identity: SourceIdentity
  /** The saved checkpoint this read resumed from; none when it started at 0 or at a given start. */
  readonly resumedFrom: Option.Option<Checkpoint>
  /** The source's bytes from `startOffset` to the end, in order, each exactly once, with their offsets. */
  readonly chunks: Stream.Stream<SourceChunk, ReadError>
  /** The same bytes without their offsets. */
  readonly stream: Stream.Stream<Uint8Array, ReadError>
  /**
   * How many connections the read fetches over: more than one for an HTTP(S) object read in
   * segments (`segments`), 1 otherwise.
   */
  readonly segments: number
  /**
   * The same chunks as `chunks`, in the order the segments fetch them rather than in source
   * order, for a consumer that writes each at its own offset and acknowledges it with
   * `acknowledgeRange`: nothing waits in a reorder window. A read over one connection gives them
   * in order. A read is taken through `chunks` or `stream`, or through this: not both.
   */
  readonly unorderedChunks: Stream.Stream<SourceChunk, ReadError>
  /**
   * The ranges past `startOffset` that `unorderedChunks` leaves out, as the checkpoint resumed
   * from recorded them: the consumer handled them before. Empty for a read over one connection.
   */
  readonly heldRanges: ReadonlyArray<ByteRange>
  /**
   * Records that the bytes from `start` to `end` are durably handled (a chunk of
   * `unorderedChunks`); checkpoints then record every range handled. Like `acknowledge` otherwise.
   */
  readonly acknowledgeRange: (
    start: number,
    end: number,
    output?: OutputCheck
  ) => Effect.Effect<void, CheckpointStoreError>
  /**
   * Records that every byte before `end` is durably handled. A checkpoint is saved once
   * `checkpointEvery` chunks have been acknowledged since the last one, carrying `output` when
   * given; the read's checkpoint is deleted once every byte of a finished read is acknowledged.
   * `end` beyond the bytes emitted is a defect.
   */
  readonly acknowledge: (end: number, output?: OutputCheck) => Effect.Effect<void, CheckpointStoreError>
  /** Whether acknowledging `end` saves a checkpoint: a consumer that records its own state with it prepares that state then. */
  readonly checkpointDue: (end: number) => boolean
  /** Saves a checkpoint of what is acknowledged now (a consumer stopping part-way), carrying `output` when given. */
  readonly checkpoint: (output?: OutputCheck) => Effect.Effect<void, CheckpointStoreError>
  /** Where a later read resumes: the acknowledged offset and the version it was read from. */
  readonly acknowledged: Effect.Effect<ReadStart>
  /** A sink that runs `handle` on each chunk and then acknowledges it. */
  readonly sink: <E, R>(
    handle: (chunk: SourceChunk) => Effect.Effect<void, E, R>
  ) => Sink.Sink<void, SourceChunk, never, E | CheckpointStoreError, R>
}

/** Reads byte sources as streams. */
export interface StreamingReaderShape {
  /**
   * Opens a read: validates options, opens the source and starts at `start`. Without `start`, a
   * read with a `destination` resumes from its saved checkpoint (unless `restart`), else from 0.
   */
  readonly open: (
    source: SourceInput,
    options?: ReadOptionsInput,
    start?: ReadStart
  ) => Effect.Effect<ReadSession, ReadError, Scope.Scope>
  /**
   * The source's bytes as one stream; the source is released when the stream ends, fails or is
   * interrupted. With a `destination`, pass `acknowledge: "on-pull"`: pulling a chunk then
   * acknowledges the one before.
   */
  readonly read: (source: SourceInput, options?: ReadOptionsInput) => Stream.Stream<Uint8Array, ReadError>
}

/** Reads byte sources as streams. */
export class StreamingReader extends Context.Tag("streaming-reader/StreamingReader")<
  StreamingReader,
  StreamingReaderShape
>() {}
