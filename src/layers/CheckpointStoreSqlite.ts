/**
 * CheckpointStoreSqlite: checkpoints in a SQLite file (WAL mode), the embedded default store.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlClient } from "@effect/sql/SqlClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import { mkdirSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { Checkpoint, CheckpointStore, CheckpointStoreError } from "../services/CheckpointStore.js"
import type { CheckpointKey, CheckpointStoreShape } from "../services/CheckpointStore.js"
import { decodeCheckpointRow } from "./CheckpointRows.js"

/** How long a statement waits for another connection's lock before failing with "database is locked". */
const busyTimeoutMs = 5_000

/** Schema versions, applied in order; `PRAGMA user_version` records how many have run. */
const migrations: ReadonlyArray<string> = [
  `CREATE TABLE IF NOT EXISTS checkpoints (
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    byte_offset INTEGER NOT NULL,
    identity TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, destination)
  )`
]

/** The one statement a save runs; a constant text, so the client prepares it once and reuses it. */
const upsertSql = `INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at)
  VALUES (?, ?, ?, ?, ?, ?)
  ON CONFLICT (source, destination) DO UPDATE SET
    byte_offset = excluded.byte_offset, identity = excluded.identity,
    chunk_size = excluded.chunk_size, updated_at = excluded.updated_at`


/** The most useful line of a failure: the driver's own message (e.g. "database is locked") when there is one. */
const reasonOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    if ("_tag" in error && error._tag === "SqlError" && "cause" in error && error.cause !== undefined) {
      return reasonOf(error.cause)
    }
    if ("message" in error && typeof error.message === "string" && error.message !== "") return error.message
  }
  return String(error)
}

const storeError = (operation: string) => (error: unknown) => new CheckpointStoreError({ operation, reason: reasonOf(error) })

const isFileDatabase = (filename: string) => filename !== "" && filename !== ":memory:" && !filename.startsWith("file:")

/** Opens the client; better-sqlite3 throws (a defect) on a path it cannot open, so that is caught here. */
const openClient = (filename: string): Effect.Effect<SqlClient, CheckpointStoreError, Scope.Scope | Reactivity.Reactivity> =>
  SqliteClient.make({ filename, disableWAL: true }).pipe(
    Effect.catchAllDefect((defect) => Effect.fail(defect)),
    Effect.mapError(storeError(`open database ${filename}`))
  )

/** Sets the connection up (lock wait, WAL, sync level) and brings the schema up to date. */
const prepare = (sql: SqlClient, filename: string): Effect.Effect<void, CheckpointStoreError> => {
  const operation = `open database ${filename}`
  return Effect.gen(function*() {
    yield* sql.unsafe(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
    yield* sql.unsafe("PRAGMA journal_mode = WAL")
    yield* sql.unsafe("PRAGMA synchronous = NORMAL")
    const rows = yield* sql.unsafe<{ readonly user_version: number }>("PRAGMA user_version")
    return rows[0]?.user_version ?? 0
  }).pipe(
    Effect.mapError(storeError(operation)),
    Effect.filterOrFail(
      (version) => version <= migrations.length,
      (version) =>
        new CheckpointStoreError({
          operation,
          reason: `schema version ${version} is newer than this program supports (${migrations.length})`
        })
    ),
    Effect.flatMap((version) =>
      Effect.forEach(migrations.slice(version), (migration, index) =>
        sql.withTransaction(
          sql.unsafe(migration).pipe(Effect.zipRight(sql.unsafe(`PRAGMA user_version = ${version + index + 1}`)))
        ), { discard: true }).pipe(Effect.mapError(storeError(`migrate database ${filename}`)))
    )
  )
}

/** A checkpoint store on the SQLite file `filename`; its parent directory is created if missing. */
export const make = (
  filename: string
): Effect.Effect<CheckpointStoreShape, CheckpointStoreError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    if (isFileDatabase(filename)) {
      yield* Effect.try({
        try: () => mkdirSync(dirname(resolve(filename)), { recursive: true }),
        catch: storeError(`create the directory of ${filename}`)
      })
    }
    const sql = yield* openClient(filename)
    yield* prepare(sql, filename)

    // Runs every few chunks: the row is built by hand (the types already hold) and the span is
    // the reader's own `StreamingReader.checkpoint`.
    const save = (checkpoint: Checkpoint) =>
      sql.unsafe(upsertSql, [
        checkpoint.key.source,
        checkpoint.key.destination,
        checkpoint.offset,
        JSON.stringify(checkpoint.identity),
        checkpoint.chunkSize,
        checkpoint.updatedAt
      ]).raw.pipe(Effect.asVoid, Effect.mapError(storeError("save checkpoint")))

    const load = Effect.fn("CheckpointStore.load")(function*(key: CheckpointKey) {
      const rows = yield* sql`SELECT source, destination, byte_offset, identity, chunk_size, updated_at
        FROM checkpoints WHERE source = ${key.source} AND destination = ${key.destination}`.pipe(
        Effect.mapError(storeError("load checkpoint"))
      )
      if (rows.length === 0) return Option.none<Checkpoint>()
      const checkpoint = yield* decodeCheckpointRow(rows[0]).pipe(
        Effect.mapError((error) =>
          new CheckpointStoreError({ operation: "load checkpoint", reason: `stored checkpoint is invalid: ${error.message}` })
        )
      )
      return Option.some(checkpoint)
    })

    const remove = Effect.fn("CheckpointStore.delete")(function*(key: CheckpointKey) {
      yield* sql`DELETE FROM checkpoints WHERE source = ${key.source} AND destination = ${key.destination}`.pipe(
        Effect.mapError(storeError("delete checkpoint"))
      )
    })

    return CheckpointStore.of({ save, load, delete: remove })
  })

/** The SQLite checkpoint store on `filename`; building it fails with `CheckpointStoreError` when the file cannot be used. */
export const layer = (filename: string): Layer.Layer<CheckpointStore, CheckpointStoreError> =>
  Layer.scoped(CheckpointStore, make(filename)).pipe(Layer.provide(Reactivity.layer))

