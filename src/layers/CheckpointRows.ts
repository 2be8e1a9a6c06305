/**
 * The `checkpoints` table's row, shared by the SQL checkpoint stores (SQLite, PostgreSQL), and
 * its mapping to and from a `Checkpoint`.
 */
import { Schema } from "effect"
import { SourceIdentity } from "../services/ByteSource.js"
import { Checkpoint } from "../services/CheckpointStore.js"

/** A 64-bit integer column: SQLite gives a number, PostgreSQL's driver gives text. */
const Int8 = Schema.Union(Schema.Number, Schema.NumberFromString)

/** One row of the `checkpoints` table, as stored. */
const CheckpointRow = Schema.Struct({
  source: Schema.String,
  destination: Schema.String,
  byte_offset: Int8,
  identity: Schema.parseJson(SourceIdentity),
  chunk_size: Schema.Number,
  updated_at: Int8
})

/** A stored row as a `Checkpoint`, and back. */
export const CheckpointFromRow = Schema.transform(CheckpointRow, Checkpoint, {
  strict: true,
  decode: (row) => ({
    key: { source: row.source, destination: row.destination },
    offset: row.byte_offset,
    identity: row.identity,
    chunkSize: row.chunk_size,
    updatedAt: row.updated_at
  }),
  encode: (checkpoint) => ({
    source: checkpoint.key.source,
    destination: checkpoint.key.destination,
    byte_offset: checkpoint.offset,
    identity: checkpoint.identity,
    chunk_size: checkpoint.chunkSize,
    updated_at: checkpoint.updatedAt
  })
})

/** Encodes a checkpoint as a row. */
export const encodeCheckpointRow = Schema.encode(CheckpointFromRow)

/** Decodes a stored row, failing when it is not a valid checkpoint. */
export const decodeCheckpointRow = Schema.decodeUnknown(CheckpointFromRow)
