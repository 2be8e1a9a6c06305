/**
 * CheckpointStoreSqlite: checkpoints in a SQLite file (WAL mode), the embedded default store.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { dirname, resolve } from "node:path"
import { CheckpointStore, CheckpointStoreError } from "../services/CheckpointStore.js"
import type { Checkpoint, CheckpointKey, CheckpointStoreShape } from "../services/CheckpointStore.js"
import { decodeCheckpointRow, rangesText, verificationText } from "./CheckpointRows.js"
import { makeDirectories } from "./SystemErrors.js"

/**
 * How long an operation waits, by default, for a lock another process holds on the state
 * database before it fails: long enough to ride out another copy's saves or migration, a backup
 * or a brief look with the `sqlite3` shell; a lock held longer is stuck or forgotten.
 */
export const defaultBusyTimeoutMs = 10_000

/**
 * How long one attempt at a statement waits inside SQLite for a lock. better-sqlite3 is
 * synchronous, so that wait blocks the event loop; the rest of the wait is spent between
 * attempts, off the event loop, so progress, signals and other reads go on meanwhile.
 */
const lockPollMs = 25

/** How a SQLite checkpoint store is opened. */
export interface SqliteStoreOptions {
  /** How long an operation waits for another process's lock before failing (default `defaultBusyTimeoutMs`). */
  readonly busyTimeoutMs?: number
}

/**
 * The schema, run by the migrator in the order of the ids in the names; `effect_sql_migrations`
 * records the ids that have run. A database from the releases that counted versions in
 * `PRAGMA user_version` has no record yet: every step checks before it changes anything, so
 * on such a database they run again and only add what is missing.
 */
const schema = {
  "1_checkpoints": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE IF NOT EXISTS checkpoints (
      source TEXT NOT NULL,
      destination TEXT NOT NULL,
      byte_offset INTEGER NOT NULL,
      identity TEXT NOT NULL,
      chunk_size INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      PRIMARY KEY (source, destination)
    )`.pipe(Effect.asVoid)),
  "2_verification": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const existing = yield* sql`SELECT 1 FROM pragma_table_info('checkpoints') WHERE name = 'verification'`
    if (existing.length === 0) yield* sql`ALTER TABLE checkpoints ADD COLUMN verification TEXT`
  }),
  "3_ranges": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const existing = yield* sql`SELECT 1 FROM pragma_table_info('checkpoints') WHERE name = 'done_ranges'`
    if (existing.length === 0) yield* sql`ALTER TABLE checkpoints ADD COLUMN done_ranges TEXT`
  })
}

/** The id of the last step of `schema`: a database whose record goes further is from a newer release. */
const schemaVersion = Object.keys(schema).length

/** The migrator of `SqliteMigrator` without its schema dump (no `schemaDirectory` is given, so it never runs). */
const runMigrations = SqliteMigrator.make({})

/**
 * The migrator takes the write lock only at its first insert, and takes a lock it meets there
 * for another process migrating: it reports nothing to do. So its record is read afterwards,
 * and a record still behind is this lock, waited for like any other.
 */
class MigrationLocked extends Data.TaggedError("MigrationLocked") {}

/** The one statement a save runs; a constant text, so the client prepares it once and reuses it. */
const upsertSql = `INSERT INTO checkpoints
    (source, destination, byte_offset, identity, chunk_size, updated_at, verification, done_ranges)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (source, destination) DO UPDATE SET
    byte_offset = excluded.byte_offset, identity = excluded.identity,
    chunk_size = excluded.chunk_size, updated_at = excluded.updated_at,
    verification = excluded.verification, done_ranges = excluded.done_ranges`

/** The most useful line of a failure: the driver's own message (e.g. "file is not a database") when there is one. */
const reasonOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    if ("_tag" in error && error._tag === "SqlError" && "cause" in error && error.cause !== undefined) {
      return reasonOf(error.cause)
    }
    if ("message" in error && typeof error.message === "string" && error.message !== "") return error.message
  }
  return String(error)
}

/** The driver's error code (`SQLITE_BUSY`, ...) of a failure or of what caused it. */
const codeOf = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null) return undefined
  if ("code" in error && typeof error.code === "string") return error.code
  return "cause" in error && error.cause !== error ? codeOf(error.cause) : undefined
}

/** Whether a failure is another connection's lock (`SQLITE_BUSY` and its extended codes). */
const isLocked = (error: unknown): boolean =>
  error instanceof MigrationLocked || codeOf(error)?.startsWith("SQLITE_BUSY") === true

/** A failed step of the schema: the migrator's line and the driver's reason. */
const migrationReason = (error: SqliteMigrator.MigrationError): string =>
  error.cause === undefined ? error.message : `${error.message}: ${reasonOf(error.cause)}`

const isFileDatabase = (filename: string) => filename !== "" && filename !== ":memory:" && !filename.startsWith("file:")

/** Opens the client; better-sqlite3 throws (a defect) on a path it cannot open, so that is caught here. */
const openClient = (
  filename: string
): Effect.Effect<SqlClient.SqlClient, CheckpointStoreError, Scope.Scope | Reactivity.Reactivity> =>
  // The client's own WAL switch would run before the lock wait is set (and wait by its own rule); `make` does it after.
  SqliteClient.make({ filename, disableWAL: true }).pipe(
    Effect.catchAllDefect((defect) => Effect.fail(defect)),
    Effect.mapError((error) =>
      new CheckpointStoreError({ operation: `open database ${filename}`, reason: reasonOf(error) })
    )
  )

/** A checkpoint store on the SQLite file `filename`; its parent directory is created if missing. */
export const make = (
  filename: string,
  options: SqliteStoreOptions = {}
): Effect.Effect<CheckpointStoreShape, CheckpointStoreError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const busyTimeoutMs = Math.max(0, options.busyTimeoutMs ?? defaultBusyTimeoutMs)
    const lockedReason = `the state database ${filename} is locked by another process ` +
      `(gave up after ${Duration.format(Duration.millis(busyTimeoutMs))})`

    const failure = (operation: string) => (error: unknown) =>
      error instanceof CheckpointStoreError
        ? error
        : new CheckpointStoreError({ operation, reason: isLocked(error) ? lockedReason : reasonOf(error) })

    /** Runs `effect` again while another connection holds the lock, until `busyTimeoutMs` has passed. */
    const whileLocked = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.flatMap(Clock.currentTimeMillis, (start) => {
        const attempt: Effect.Effect<A, E, R> = Effect.catchIf(
          effect,
          isLocked,
          (error) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => {
              const left = start + busyTimeoutMs - now
              return left <= 0 ? Effect.fail(error) : Effect.zipRight(Effect.sleep(Math.min(lockPollMs, left)), attempt)
            })
        )
        return attempt
      })

    if (isFileDatabase(filename)) {
      yield* Effect.try({
        try: () => makeDirectories(dirname(resolve(filename))),
        catch: (error) =>
          new CheckpointStoreError({ operation: `create the directory of ${filename}`, reason: reasonOf(error) })
      })
    }
    const sql = yield* openClient(filename)

    const opening = `open database ${filename}`
    // The client runs every statement on its one connection, so these settings hold for all of them.
    yield* sql.unsafe(`PRAGMA busy_timeout = ${Math.min(lockPollMs, busyTimeoutMs)}`).pipe(
      Effect.mapError(failure(opening))
    )
    yield* whileLocked(sql.unsafe("PRAGMA journal_mode = WAL")).pipe(Effect.mapError(failure(opening)))
    yield* sql.unsafe("PRAGMA synchronous = NORMAL").pipe(Effect.mapError(failure(opening)))

    const migrate = Effect.gen(function*() {
      yield* runMigrations({ loader: SqliteMigrator.fromRecord(schema) })
      const rows = yield* sql<
        { readonly latest: number | null }
      >`SELECT max(migration_id) AS latest FROM effect_sql_migrations`
      const latest = rows[0]?.latest ?? 0
      if (latest > schemaVersion) {
        return yield* new CheckpointStoreError({
          operation: opening,
          reason: `schema version ${latest} is newer than this program supports (${schemaVersion})`
        })
      }
      if (latest < schemaVersion) return yield* new MigrationLocked()
    }).pipe(
      // A step that fails is a defect of the migrator's; here it is a database that cannot be used.
      Effect.catchSomeDefect((defect) =>
        defect instanceof SqliteMigrator.MigrationError
          ? Option.some(
            Effect.fail(
              new CheckpointStoreError({ operation: `migrate database ${filename}`, reason: migrationReason(defect) })
            )
          )
          : Option.none()
      ),
      Effect.provideService(SqlClient.SqlClient, sql)
    )
    yield* whileLocked(migrate).pipe(Effect.mapError(failure(`migrate database ${filename}`)))

    // Runs every few chunks: the row is built by hand (the types already hold) and the span is
    // the reader's own `StreamingReader.checkpoint`.
    const save = (checkpoint: Checkpoint) =>
      whileLocked(
        sql.unsafe(upsertSql, [
          checkpoint.key.source,
          checkpoint.key.destination,
          checkpoint.offset,
          JSON.stringify(checkpoint.identity),
          checkpoint.chunkSize,
          checkpoint.updatedAt,
          verificationText(checkpoint),
          rangesText(checkpoint)
        ]).raw
      ).pipe(Effect.asVoid, Effect.mapError(failure("save checkpoint")))

    const load = Effect.fn("CheckpointStore.load")(function*(key: CheckpointKey) {
      const rows = yield* whileLocked(
        sql`SELECT source, destination, byte_offset, identity, chunk_size, updated_at, verification, done_ranges
          FROM checkpoints WHERE source = ${key.source} AND destination = ${key.destination}`
      ).pipe(Effect.mapError(failure("load checkpoint")))
      if (rows.length === 0) return Option.none<Checkpoint>()
      return Option.some(yield* decodeCheckpointRow(key, rows[0]))
    })

    const remove = Effect.fn("CheckpointStore.delete")(function*(key: CheckpointKey) {
      yield* whileLocked(
        sql`DELETE FROM checkpoints WHERE source = ${key.source} AND destination = ${key.destination}`
      ).pipe(Effect.mapError(failure("delete checkpoint")))
    })

    return CheckpointStore.of({ save, load, delete: remove })
  })

/** The SQLite checkpoint store on `filename`; building it fails with `CheckpointStoreError` when the file cannot be used. */
export const layer = (
  filename: string,
  options: SqliteStoreOptions = {}
): Layer.Layer<CheckpointStore, CheckpointStoreError> =>
  Layer.scoped(CheckpointStore, make(filename, options)).pipe(Layer.provide(Reactivity.layer))
