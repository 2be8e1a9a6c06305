/**
 * CheckpointStorePg: checkpoints in PostgreSQL (through `@effect/sql-pg`), next to the jobs table
 * many workers share; the migrations here create both. `fenced(claim)` is the store one claimed
 * job writes through: its saves and deletes land only while the job still carries the claim's epoch.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgMigrator from "@effect/sql-pg/PgMigrator"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as ConfigError from "effect/ConfigError"
import type * as Scope from "effect/Scope"
import { redactUrlText } from "../services/ByteSource.js"
import { CheckpointStore, CheckpointStoreError } from "../services/CheckpointStore.js"
import type { Checkpoint, CheckpointKey, CheckpointStoreShape } from "../services/CheckpointStore.js"
import type { Claim } from "../services/JobQueue.js"
import { leaseLostReason } from "../services/JobQueue.js"
import { decodeCheckpointRow, encodeCheckpointRow } from "./CheckpointRows.js"

/** The environment variable (through `Config`) that holds the database URL. */
export const urlConfig: Config.Config<Redacted.Redacted> = Config.redacted("STREAMING_READER_POSTGRES_URL")

/** How long opening a connection may take before the database counts as unreachable. */
const connectTimeout = Duration.seconds(5)

/** Serialises the creation of the migrator's table by workers starting together (an arbitrary constant key). */
const migrationLockKey = 727_001

/**
 * The schema, run by the migrator in the order of the ids in the names; `effect_sql_migrations`
 * records the ids that have run. A database from the releases that counted versions in
 * `streaming_reader_schema` has no record yet: every step checks before it changes anything,
 * so on such a database they run again and only add what is missing.
 */
const schema = {
  "1_checkpoints_and_jobs": Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql.unsafe(`CREATE TABLE IF NOT EXISTS checkpoints (
      source TEXT NOT NULL,
      destination TEXT NOT NULL,
      byte_offset BIGINT NOT NULL,
      identity TEXT NOT NULL,
      chunk_size INTEGER NOT NULL,
      updated_at BIGINT NOT NULL,
      PRIMARY KEY (source, destination)
    );
    CREATE INDEX IF NOT EXISTS checkpoints_destination ON checkpoints (destination);
    CREATE TABLE IF NOT EXISTS jobs (
      id BIGSERIAL PRIMARY KEY,
      source TEXT NOT NULL,
      destination TEXT NOT NULL,
      state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
      owner TEXT,
      epoch BIGINT NOT NULL DEFAULT 0,
      attempts INTEGER NOT NULL DEFAULT 0,
      lease_expires_at TIMESTAMPTZ,
      available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      last_error TEXT,
      created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS jobs_claimable ON jobs (id) WHERE state IN ('queued', 'running')`).pipe(Effect.asVoid)
  ),
  "2_verification": Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS verification TEXT`.pipe(Effect.asVoid)
  ),
  "3_ranges": Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS done_ranges TEXT`.pipe(Effect.asVoid)
  )
}

/** The id of the last step of `schema`: a database whose record goes further is from a newer release. */
const schemaVersion = Object.keys(schema).length

/** The migrator of `PgMigrator` without its schema dump (no `schemaDirectory` is given, so it never runs). */
const runMigrations = PgMigrator.make({})

/**
 * The migrator's table, as the migrator creates it. The migrator runs its steps under
 * `LOCK TABLE` on it, which serialises workers starting together, but creates it beforehand by
 * a check and a `CREATE TABLE` that race; created here first, under an advisory lock, it exists.
 */
const migrationsTable = `CREATE TABLE IF NOT EXISTS effect_sql_migrations (
  migration_id integer primary key,
  created_at timestamp with time zone not null default now(),
  name text not null
)`

/** The database could not be opened or brought up to date. */
export class PostgresUnavailable extends Data.TaggedError("PostgresUnavailable")<{
  /** The URL with its credentials redacted. */
  readonly database: string
  readonly reason: string
}> {}

/** Why `url` is not a PostgreSQL URL this program can use, if it is not. */
const urlProblem = (url: string): string | undefined => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return "not a URL (expected postgres://user:password@host:port/database)"
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    return `unsupported scheme ${parsed.protocol} (expected postgres://user:password@host:port/database)`
  }
  if (parsed.hostname === "") return "no host in the URL (expected postgres://user:password@host:port/database)"
  return undefined
}

/** The most useful line of a driver failure: the server's or the socket's own message. */
export const reasonOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    if ("_tag" in error && error._tag === "SqlError" && "cause" in error && error.cause !== undefined) {
      return reasonOf(error.cause)
    }
    if (error instanceof AggregateError && error.errors.length > 0) return reasonOf(error.errors[0])
    if ("message" in error && typeof error.message === "string" && error.message !== "") return error.message
    if ("code" in error && typeof error.code === "string") return error.code
  }
  return String(error)
}

/** A failed step of the schema: the migrator's line and the server's reason. */
const migrationReason = (error: PgMigrator.MigrationError): string =>
  error.cause === undefined ? error.message : `${error.message}: ${reasonOf(error.cause)}`

/** Runs the steps of the schema not yet recorded, in one transaction, serialised across processes. */
export const migrate = (sql: SqlClient.SqlClient, database: string): Effect.Effect<void, PostgresUnavailable> =>
  Effect.gen(function*() {
    yield* sql.withTransaction(
      Effect.zipRight(sql`SELECT pg_advisory_xact_lock(${migrationLockKey})`, sql.unsafe(migrationsTable))
    )
    yield* runMigrations({ loader: PgMigrator.fromRecord(schema) })
    const rows = yield* sql<
      { readonly latest: number | null }
    >`SELECT max(migration_id) AS latest FROM effect_sql_migrations`
    const latest = rows[0]?.latest ?? 0
    if (latest > schemaVersion) {
      return yield* new PostgresUnavailable({
        database,
        reason: `schema version ${latest} is newer than this program supports (${schemaVersion})`
      })
    }
  }).pipe(
    // A step that fails is a defect of the migrator's; here it is a database that cannot be used.
    Effect.catchSomeDefect((defect) =>
      defect instanceof PgMigrator.MigrationError ? Option.some(Effect.fail(defect)) : Option.none()
    ),
    Effect.provideService(SqlClient.SqlClient, sql),
    Effect.mapError((error) =>
      error instanceof PostgresUnavailable ? error : new PostgresUnavailable({
        database,
        reason: `migration failed: ${
          error instanceof PgMigrator.MigrationError ? migrationReason(error) : reasonOf(error)
        }`
      })
    )
  )

/** Opens a connection pool on `url` and brings the schema up to date; a bad URL, an unreachable server or refused credentials fail with one clear reason. */
export const connect = (
  url: Redacted.Redacted | string
): Effect.Effect<PgClient.PgClient, PostgresUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const text = typeof url === "string" ? url : Redacted.value(url)
    const database = text.trim() === "" ? "(empty URL)" : redactUrlText(text)
    const problem = urlProblem(text)
    if (problem !== undefined) return yield* new PostgresUnavailable({ database, reason: problem })
    const client = yield* PgClient.make({
      url: Redacted.make(text),
      connectTimeout,
      applicationName: "streaming-reader"
    }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.mapError((error) => new PostgresUnavailable({ database, reason: reasonOf(error) }))
    )
    yield* migrate(client, database)
    return client
  })

const storeError = (operation: string) => (error: unknown) =>
  new CheckpointStoreError({ operation, reason: reasonOf(error) })

const upsertSet = `ON CONFLICT (source, destination) DO UPDATE SET
    byte_offset = excluded.byte_offset, identity = excluded.identity,
    chunk_size = excluded.chunk_size, updated_at = excluded.updated_at,
    verification = excluded.verification, done_ranges = excluded.done_ranges`

/** The columns of a row, in the order of a save's parameters. */
const columns = "source, destination, byte_offset, identity, chunk_size, updated_at, verification, done_ranges"

/** A save: one upsert. */
const upsertSql = `INSERT INTO checkpoints (${columns})
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ${upsertSet}`

/**
 * A fenced save: the upsert happens only if the job still carries the claim's epoch, checked in
 * the same statement under a share lock on the job's row, so a claim committing at the same time
 * either waits for this save or makes it change nothing.
 */
const fencedUpsertSql = `WITH lease AS (
    SELECT id FROM jobs WHERE id = $9 AND epoch = $10 AND state = 'running' FOR SHARE
  )
  INSERT INTO checkpoints (${columns})
  SELECT $1::text, $2::text, $3::bigint, $4::text, $5::integer, $6::bigint, $7::text, $8::text FROM lease
  ${upsertSet}
  RETURNING 1 AS saved`

/** A fenced delete: removes the checkpoint only while the lease holds; reports whether it held. */
const fencedDeleteSql = `WITH lease AS (
    SELECT id FROM jobs WHERE id = $3 AND epoch = $4 AND state = 'running' FOR SHARE
  ), removed AS (
    DELETE FROM checkpoints WHERE source = $1 AND destination = $2 AND EXISTS (SELECT 1 FROM lease)
  )
  SELECT count(*)::int AS held FROM lease`

const loadWith = (sql: SqlClient.SqlClient) =>
  Effect.fn("CheckpointStore.load")(function*(key: CheckpointKey) {
    const rows = yield* sql.unsafe(
      `SELECT ${columns} FROM checkpoints WHERE source = $1 AND destination = $2`,
      [key.source, key.destination]
    ).pipe(Effect.mapError(storeError("load checkpoint")))
    if (rows.length === 0) return Option.none<Checkpoint>()
    return Option.some(yield* decodeCheckpointRow(key, rows[0]))
  })

const rowParams = (checkpoint: Checkpoint) =>
  Effect.map(
    encodeCheckpointRow(checkpoint).pipe(Effect.mapError(storeError("save checkpoint"))),
    (row) => [
      row.source,
      row.destination,
      row.byte_offset,
      row.identity,
      row.chunk_size,
      row.updated_at,
      row.verification,
      row.done_ranges
    ]
  )

/** A checkpoint store on the database `sql` is connected to (its schema already migrated). */
export const makeWith = (sql: SqlClient.SqlClient): CheckpointStoreShape =>
  CheckpointStore.of({
    save: Effect.fn("CheckpointStore.save")(function*(checkpoint: Checkpoint) {
      const params = yield* rowParams(checkpoint)
      yield* sql.unsafe(upsertSql, params).pipe(Effect.mapError(storeError("save checkpoint")))
    }),
    load: loadWith(sql),
    delete: Effect.fn("CheckpointStore.delete")(function*(key: CheckpointKey) {
      yield* sql.unsafe(`DELETE FROM checkpoints WHERE source = $1 AND destination = $2`, [key.source, key.destination])
        .pipe(Effect.mapError(storeError("delete checkpoint")))
    })
  })

/**
 * The checkpoint store of one claim on `sql`: saves and deletes land only while the job carries
 * the claim's epoch; otherwise they fail with `CheckpointStoreError` whose reason is
 * `leaseLostReason(job id, epoch)` and change nothing.
 */
export const fencedWith = (sql: SqlClient.SqlClient, claim: Claim): CheckpointStoreShape => {
  const jobId = claim.job.id
  const epoch = claim.epoch
  const lost = (operation: string) => new CheckpointStoreError({ operation, reason: leaseLostReason(jobId, epoch) })
  return CheckpointStore.of({
    save: Effect.fn("CheckpointStore.save")(function*(checkpoint: Checkpoint) {
      const params = yield* rowParams(checkpoint)
      const rows = yield* sql.unsafe(fencedUpsertSql, [...params, jobId, epoch]).pipe(
        Effect.mapError(storeError("save checkpoint"))
      )
      if (rows.length === 0) return yield* lost("save checkpoint")
    }),
    load: loadWith(sql),
    delete: Effect.fn("CheckpointStore.delete")(function*(key: CheckpointKey) {
      const rows = yield* sql.unsafe<{ readonly held: number }>(fencedDeleteSql, [
        key.source,
        key.destination,
        jobId,
        epoch
      ])
        .pipe(Effect.mapError(storeError("delete checkpoint")))
      if ((rows[0]?.held ?? 0) === 0) return yield* lost("delete checkpoint")
    })
  })
}

/** The fenced checkpoint store of one claim, on the `SqlClient` in context. */
export const fenced = (claim: Claim): Effect.Effect<CheckpointStoreShape, never, PgClient.PgClient> =>
  Effect.map(PgClient.PgClient, (sql) => fencedWith(sql, claim))

/** A checkpoint store on the PostgreSQL database at `url`; the schema is created or brought up to date. */
export const make = (
  url: Redacted.Redacted | string
): Effect.Effect<CheckpointStoreShape, CheckpointStoreError, Scope.Scope> =>
  connect(url).pipe(
    Effect.map(makeWith),
    Effect.mapError((error) =>
      new CheckpointStoreError({ operation: `open database ${error.database}`, reason: error.reason })
    )
  )

/** The PostgreSQL checkpoint store at `url`; building it fails with `CheckpointStoreError` when the database cannot be used. */
export const layer = (url: Redacted.Redacted | string): Layer.Layer<CheckpointStore, CheckpointStoreError> =>
  Layer.scoped(CheckpointStore, make(url))

/** The PostgreSQL checkpoint store at the URL in `STREAMING_READER_POSTGRES_URL`. */
export const layerConfig: Layer.Layer<CheckpointStore, CheckpointStoreError | ConfigError.ConfigError> = Layer
  .unwrapEffect(
    Effect.map(urlConfig, layer)
  )
