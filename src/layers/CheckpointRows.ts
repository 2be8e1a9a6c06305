/**
 * The `checkpoints` table's row, shared by the SQL checkpoint stores (SQLite, PostgreSQL), and
 * its mapping to and from a `Checkpoint`.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { redactText, SourceIdentity } from "../services/ByteSource.js"
import { ByteRange, Checkpoint, CheckpointStoreError, OutputCheck } from "../services/CheckpointStore.js"
import type { CheckpointKey } from "../services/CheckpointStore.js"

/** A 64-bit integer column: SQLite gives a number, PostgreSQL's driver gives text. */
const Int8 = Schema.Union(Schema.Number, Schema.NumberFromString)

/** A 64-bit integer column that holds a count of bytes, so never negative. */
const ByteCount = Int8.pipe(Schema.compose(Schema.NonNegativeInt))

/**
 * The `verification` column: what a resume checks before it builds on the bytes already
 * written, as JSON. NULL when the checkpoint has none (and in rows saved before the column existed).
 */
const Verification = Schema.Struct({
  output: Schema.optional(OutputCheck),
  prefixSha256: Schema.optional(Schema.String)
})

/** One row of the `checkpoints` table, as stored. */
const CheckpointRow = Schema.Struct({
  source: Schema.String,
  destination: Schema.String,
  byte_offset: ByteCount,
  identity: Schema.parseJson(SourceIdentity),
  chunk_size: Schema.Int.pipe(Schema.positive()),
  updated_at: Int8,
  verification: Schema.NullOr(Schema.parseJson(Verification)),
  /** The ranges past the offset acknowledged too, as JSON; NULL when there are none (and in older rows). */
  done_ranges: Schema.NullOr(Schema.parseJson(Schema.Array(ByteRange)))
})

/** A stored row as a `Checkpoint`, and back. */
export const CheckpointFromRow = Schema.transform(CheckpointRow, Checkpoint, {
  strict: true,
  decode: (row) => ({
    key: { source: row.source, destination: row.destination },
    offset: row.byte_offset,
    identity: row.identity,
    chunkSize: row.chunk_size,
    updatedAt: row.updated_at,
    ...(row.verification?.output === undefined ? {} : { output: row.verification.output }),
    ...(row.verification?.prefixSha256 === undefined ? {} : { prefixSha256: row.verification.prefixSha256 }),
    ...(row.done_ranges === null || row.done_ranges.length === 0 ? {} : { ranges: row.done_ranges })
  }),
  encode: (checkpoint) => ({
    source: checkpoint.key.source,
    destination: checkpoint.key.destination,
    byte_offset: checkpoint.offset,
    identity: checkpoint.identity,
    chunk_size: checkpoint.chunkSize,
    updated_at: checkpoint.updatedAt,
    verification: checkpoint.output === undefined && checkpoint.prefixSha256 === undefined
      ? null
      : {
        ...(checkpoint.output === undefined ? {} : { output: checkpoint.output }),
        ...(checkpoint.prefixSha256 === undefined ? {} : { prefixSha256: checkpoint.prefixSha256 })
      },
    done_ranges: checkpoint.ranges === undefined || checkpoint.ranges.length === 0 ? null : checkpoint.ranges
  })
})

/**
 * The `verification` column of a checkpoint, built by hand for the hot path: the same text
 * `encodeCheckpointRow` gives (NULL when there is nothing to verify).
 */
export const verificationText = (checkpoint: Checkpoint): string | null => {
  if (checkpoint.output === undefined && checkpoint.prefixSha256 === undefined) return null
  const { output, prefixSha256 } = checkpoint
  return JSON.stringify({
    ...(output === undefined
      ? {}
      : {
        output: {
          dev: output.dev,
          ino: output.ino,
          tailLength: output.tailLength,
          tailSha256: output.tailSha256,
          ...(output.tailEnd === undefined ? {} : { tailEnd: output.tailEnd })
        }
      }),
    ...(prefixSha256 === undefined ? {} : { prefixSha256 })
  })
}

/**
 * The `done_ranges` column of a checkpoint, built by hand for the hot path: the same text
 * `encodeCheckpointRow` gives (NULL when there are no ranges).
 */
export const rangesText = (checkpoint: Checkpoint): string | null => {
  const { ranges } = checkpoint
  if (ranges === undefined || ranges.length === 0) return null
  return JSON.stringify(ranges.map((range) => ({ start: range.start, end: range.end })))
}

/** Encodes a checkpoint as a row. */
export const encodeCheckpointRow = Schema.encode(CheckpointFromRow)

/** The one-line failure of a load whose row is not a valid checkpoint; the fix is to start over. */
export const unreadableCheckpoint = (key: CheckpointKey): CheckpointStoreError =>
  new CheckpointStoreError({
    operation: "load checkpoint",
    reason: `the saved checkpoint for ${redactText(key.source).replace(/[\r\n]+/g, " ")} cannot be read; ` +
      "run again with --restart to start over"
  })

/** Decodes the stored row of `key`, failing with `unreadableCheckpoint` when it is not a valid checkpoint. */
export const decodeCheckpointRow = (
  key: CheckpointKey,
  row: unknown
): Effect.Effect<Checkpoint, CheckpointStoreError> =>
  Schema.decodeUnknown(CheckpointFromRow)(row).pipe(Effect.mapError(() => unreadableCheckpoint(key)))
