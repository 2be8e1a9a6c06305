import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import { ConfigError, ConfigProvider, Context, Deferred, Effect, Layer, Option } from "effect"
import * as CheckpointStorePg from "../../src/layers/CheckpointStorePg.js"
import * as JobQueuePg from "../../src/layers/JobQueuePg.js"
import { CheckpointStore, CheckpointStoreError } from "../../src/services/CheckpointStore.js"
import type { Checkpoint } from "../../src/services/CheckpointStore.js"
import { JobQueue, leaseLostReason } from "../../src/services/JobQueue.js"
import type { Claim } from "../../src/services/JobQueue.js"
import { freshDatabase, postgresUrl, rawClient, skipPostgres, wrongPasswordUrl } from "../support/postgres.js"
import { verificationText } from "../../src/layers/CheckpointRows.js"
import { checkpointStoreContract } from "./CheckpointStore.contract.js"

/** The URL of this file's database. */
class Database extends Context.Tag("test/Database")<Database, string>() {}

const DatabaseLive = Layer.scoped(Database, freshDatabase)

/** The queue, the plain store and a raw client on one fresh database. */
const Env = Layer.unwrapEffect(Effect.map(Database, (url) =>
  Layer.mergeAll(
    JobQueuePg.layer(url, { lease: "30 seconds" }),
    CheckpointStorePg.layer(url),
    Layer.scoped(PgClient.PgClient, rawClient(url))
  ))).pipe(Layer.provideMerge(DatabaseLive))

const sample = (destination: string, offset: number): Checkpoint => ({
  key: { source: "https://example.com/big.bin", destination },
  offset,
  identity: { size: 10 * 2 ** 30, etag: "\"e1\"" },
  chunkSize: 64 * 1024,
  updatedAt: 1_700_000_000_000
})

/** The hand-written migrations of the releases that counted schema versions in `streaming_reader_schema`. */
const legacyMigrations: ReadonlyArray<string> = [
  `CREATE TABLE checkpoints (
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    byte_offset BIGINT NOT NULL,
    identity TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source, destination)
  );
  CREATE INDEX checkpoints_destination ON checkpoints (destination);
  CREATE TABLE jobs (
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
  CREATE INDEX jobs_claimable ON jobs (id) WHERE state IN ('queued', 'running')`,
  `ALTER TABLE checkpoints ADD COLUMN verification TEXT`
]

/** Brings the database of `sql` to schema `version` as those releases did: the same transaction, lock and bookkeeping. */
const createLegacy = (sql: PgClient.PgClient, version: 1 | 2) =>
  sql.withTransaction(Effect.gen(function*() {
    yield* sql.unsafe(`SELECT pg_advisory_xact_lock(727001)`)
    yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS streaming_reader_schema (version INTEGER NOT NULL)`)
    for (const migration of legacyMigrations.slice(0, version)) yield* sql.unsafe(migration)
    yield* sql.unsafe(`INSERT INTO streaming_reader_schema (version) VALUES (${version})`)
  }))

/** The migrations recorded in the database of `sql`, as `[id, name]`. */
const recordedMigrations = (sql: PgClient.PgClient) =>
  Effect.map(
    sql.unsafe<{ readonly migration_id: number; readonly name: string }>(
      `SELECT migration_id, name FROM effect_sql_migrations ORDER BY migration_id`
    ),
    (rows): ReadonlyArray<readonly [number, string]> => rows.map((row) => [row.migration_id, row.name])
  )

/** The migrations this release records. */
const currentMigrations: ReadonlyArray<readonly [number, string]> = [
  [1, "checkpoints_and_jobs"],
  [2, "verification"],
  [3, "ranges"]
]

/**
 * Brings the database of `sql` to the schema of the release whose migrator ran
 * `1_checkpoints_and_jobs` and `2_verification`: the migrator's table and record, the same steps
 * in one transaction. Frozen: it is that release, not this one.
 */
const createPreviousRelease = (sql: PgClient.PgClient) =>
  Effect.gen(function*() {
    yield* sql.unsafe(`CREATE TABLE effect_sql_migrations (
      migration_id integer primary key,
      created_at timestamp with time zone not null default now(),
      name text not null
    )`)
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql.unsafe(`LOCK TABLE effect_sql_migrations IN ACCESS EXCLUSIVE MODE`)
      yield* sql.unsafe(
        `INSERT INTO effect_sql_migrations (migration_id, name) VALUES (1, 'checkpoints_and_jobs'), (2, 'verification')`
      )
      for (const migration of legacyMigrations) yield* sql.unsafe(migration)
    }))
  })

/** Saves `checkpoint` (no ranges, no tail end) with the statement of that release. */
const savePreviousRelease = (sql: PgClient.PgClient, checkpoint: Checkpoint) => {
  const { output, prefixSha256 } = checkpoint
  const verification = output === undefined && prefixSha256 === undefined ? null : JSON.stringify({
    ...(output === undefined
      ? {}
      : { output: { dev: output.dev, ino: output.ino, tailLength: output.tailLength, tailSha256: output.tailSha256 } }),
    ...(prefixSha256 === undefined ? {} : { prefixSha256 })
  })
  return sql.unsafe(
    `INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at, verification)
      VALUES ($1, $2, $3, $4, $5, $6, $7)
      ON CONFLICT (source, destination) DO UPDATE SET
        byte_offset = excluded.byte_offset, identity = excluded.identity,
        chunk_size = excluded.chunk_size, updated_at = excluded.updated_at,
        verification = excluded.verification`,
    [
      checkpoint.key.source,
      checkpoint.key.destination,
      checkpoint.offset,
      JSON.stringify(checkpoint.identity),
      checkpoint.chunkSize,
      checkpoint.updatedAt,
      verification
    ]
  )
}

/** Lets the lease of `claim` run out now (the database's clock decides expiry). */
const expire = (claim: Claim) =>
  Effect.flatMap(
    PgClient.PgClient,
    (sql) => sql.unsafe(`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [claim.job.id])
  )

/** Enqueues a job for `destination` and claims it. */
const claimNew = (destination: string, worker = "worker-a") =>
  Effect.gen(function*() {
    const queue = yield* JobQueue
    yield* queue.enqueue("https://example.com/big.bin", destination)
    return Option.getOrThrow(yield* queue.claim(worker))
  })

describe.skipIf(skipPostgres)("CheckpointStorePg", () => {
  checkpointStoreContract(
    "CheckpointStorePg",
    () => Layer.unwrapScoped(Effect.map(freshDatabase, (url) => CheckpointStorePg.layer(url)))
  )

  layer(Env)("fenced saves", (it) => {
    it.effect("a fenced save lands while the claim holds, and is refused after a new claim", () =>
      Effect.gen(function*() {
        const queue = yield* JobQueue
        const store = yield* CheckpointStore
        const first = yield* claimNew("/out/fenced-1.bin")
        const fenced = queue.checkpoints(first)
        yield* fenced.save(sample("/out/fenced-1.bin", 1000))
        assert.deepStrictEqual(
          yield* store.load(sample("/out/fenced-1.bin", 0).key),
          Option.some(sample("/out/fenced-1.bin", 1000))
        )

        yield* expire(first)
        const second = Option.getOrThrow(yield* queue.claim("worker-b"))
        assert.strictEqual(second.job.id, first.job.id)
        assert.strictEqual(second.epoch, first.epoch + 1)

        const refused = yield* fenced.save(sample("/out/fenced-1.bin", 5000)).pipe(Effect.flip)
        assert.instanceOf(refused, CheckpointStoreError)
        assert.deepStrictEqual(
          { operation: refused.operation, reason: refused.reason },
          { operation: "save checkpoint", reason: leaseLostReason(first.job.id, first.epoch) }
        )
        assert.strictEqual(refused.reason, `lease lost: job ${first.job.id} epoch ${first.epoch}`)
        assert.deepStrictEqual(
          yield* store.load(sample("/out/fenced-1.bin", 0).key),
          Option.some(sample("/out/fenced-1.bin", 1000)),
          "the stale save changed nothing"
        )

        yield* queue.checkpoints(second).save(sample("/out/fenced-1.bin", 2000))
        assert.deepStrictEqual(
          yield* store.load(sample("/out/fenced-1.bin", 0).key),
          Option.some(sample("/out/fenced-1.bin", 2000))
        )
      }))

    it.effect("a stale fenced delete is refused and keeps the checkpoint; the holder's delete removes it", () =>
      Effect.gen(function*() {
        const queue = yield* JobQueue
        const first = yield* claimNew("/out/fenced-2.bin")
        yield* queue.checkpoints(first).save(sample("/out/fenced-2.bin", 42))
        yield* expire(first)
        const second = Option.getOrThrow(yield* queue.claim("worker-b"))
        const refused = yield* queue.checkpoints(first).delete(sample("/out/fenced-2.bin", 0).key).pipe(Effect.flip)
        assert.instanceOf(refused, CheckpointStoreError)
        assert.deepStrictEqual(
          { operation: refused.operation, reason: refused.reason },
          { operation: "delete checkpoint", reason: leaseLostReason(first.job.id, first.epoch) }
        )
        const fenced = queue.checkpoints(second)
        assert.isTrue(Option.isSome(yield* fenced.load(sample("/out/fenced-2.bin", 0).key)))
        yield* fenced.delete(sample("/out/fenced-2.bin", 0).key)
        assert.isTrue(Option.isNone(yield* fenced.load(sample("/out/fenced-2.bin", 0).key)))
        yield* fenced.delete(sample("/out/fenced-2.bin", 0).key)
      }))

    it.effect("fenced saves are refused once the job is completed or handed back", () =>
      Effect.gen(function*() {
        const queue = yield* JobQueue
        const done = yield* claimNew("/out/fenced-3.bin")
        yield* queue.complete(done)
        const afterDone = yield* queue.checkpoints(done).save(sample("/out/fenced-3.bin", 1)).pipe(Effect.flip)
        assert.strictEqual(afterDone.reason, leaseLostReason(done.job.id, done.epoch))

        const released = yield* claimNew("/out/fenced-4.bin")
        yield* queue.release(released)
        const afterRelease = yield* queue.checkpoints(released).save(sample("/out/fenced-4.bin", 1)).pipe(Effect.flip)
        assert.strictEqual(afterRelease.reason, leaseLostReason(released.job.id, released.epoch))
        assert.isTrue(Option.isNone(yield* (yield* CheckpointStore).load(sample("/out/fenced-4.bin", 0).key)))
        const again = Option.getOrThrow(yield* queue.claim("worker-b"))
        assert.strictEqual(again.job.id, released.job.id)
        yield* queue.complete(again)
      }))

    it.effect("stale saves racing a takeover never land after the new claimant's save", () =>
      Effect.gen(function*() {
        const queue = yield* JobQueue
        const store = yield* CheckpointStore
        for (let round = 0; round < 10; round++) {
          const destination = `/out/fenced-race-${round}.bin`
          const first = yield* claimNew(destination)
          const stale = queue.checkpoints(first)
          yield* expire(first)
          // The stale worker keeps saving while another worker claims the job and saves at once.
          const staleSaves = Effect.forEach(
            Array.from({ length: 20 }, (_, i) => i + 1),
            (i) => Effect.either(stale.save(sample(destination, i))),
            { concurrency: 4 }
          )
          // A claim skips the job while a stale save holds its row: claim until it is taken.
          const takeover = Effect.gen(function*() {
            const second = Option.getOrThrow(
              yield* queue.claim("worker-b").pipe(Effect.repeat({ until: Option.isSome, times: 1000 }))
            )
            yield* queue.checkpoints(second).save(sample(destination, 1_000_000))
            return second
          })
          const [results, second] = yield* Effect.all([staleSaves, takeover], { concurrency: 2 })
          assert.strictEqual(second.epoch, first.epoch + 1)
          for (const result of results) {
            if (result._tag === "Left") {
              assert.strictEqual(result.left.reason, leaseLostReason(first.job.id, first.epoch))
            }
          }
          assert.deepStrictEqual(
            yield* store.load(sample(destination, 0).key),
            Option.some(sample(destination, 1_000_000)),
            `round ${round}: the new claimant's checkpoint stands`
          )
        }
      }))

    it.effect("a stale save waits for a takeover in progress and is refused once it commits", () =>
      Effect.gen(function*() {
        const queue = yield* JobQueue
        const store = yield* CheckpointStore
        const sql = yield* PgClient.PgClient
        const destination = "/out/fenced-in-flight.bin"
        const first = yield* claimNew(destination)
        yield* queue.checkpoints(first).save(sample(destination, 10))
        // Forked outside the transaction below, so that it runs on a connection of its own.
        const go = yield* Deferred.make<void>()
        const save = yield* Effect.fork(
          Deferred.await(go).pipe(
            Effect.zipRight(Effect.either(queue.checkpoints(first).save(sample(destination, 20))))
          )
        )
        const stale = yield* sql.withTransaction(Effect.gen(function*() {
          // Another worker's claim, not yet committed.
          yield* sql.unsafe(`UPDATE jobs SET epoch = epoch + 1, owner = 'worker-b' WHERE id = $1`, [first.job.id])
          yield* Deferred.succeed(go, undefined)
          // Until the save either finishes or is seen waiting for the claim's row lock.
          const waiting = sql.unsafe<{ readonly n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`
          ).pipe(Effect.map((rows) => rows[0]!.n > 0))
          yield* Effect.zipWith(waiting, save.poll, (locked, done) => locked || Option.isSome(done)).pipe(
            Effect.repeat({ until: (stop) => stop })
          )
          assert.isTrue(Option.isNone(yield* save.poll), "the stale save waits for the claim's transaction")
          return save
        }))
        const outcome = yield* stale.await.pipe(Effect.flatten)
        assert.isTrue(outcome._tag === "Left" && outcome.left.reason === leaseLostReason(first.job.id, first.epoch))
        assert.deepStrictEqual(yield* store.load(sample(destination, 0).key), Option.some(sample(destination, 10)))
      }))

    it.effect("a fenced save keeps the destination's check, the prefix digest and the ranges, and clears them", () =>
      Effect.gen(function*() {
        const queue = yield* JobQueue
        const store = yield* CheckpointStore
        const claim = yield* claimNew("/out/fenced-verified.bin")
        const saved: Checkpoint = {
          ...sample("/out/fenced-verified.bin", 65_536),
          output: { dev: 64_769, ino: 2 ** 36 + 1, tailLength: 65_536, tailSha256: "ef".repeat(32), tailEnd: 2 ** 33 },
          prefixSha256: "01".repeat(32),
          ranges: [{ start: 2 ** 20, end: 2 ** 21 }, { start: 2 ** 33 - 65_536, end: 2 ** 33 }]
        }
        yield* queue.checkpoints(claim).save(saved)
        assert.deepStrictEqual(yield* store.load(saved.key), Option.some(saved))
        assert.deepStrictEqual(yield* queue.checkpoints(claim).load(saved.key), Option.some(saved))
        const plain = sample("/out/fenced-verified.bin", 2 ** 21)
        yield* queue.checkpoints(claim).save(plain)
        assert.deepStrictEqual(yield* store.load(saved.key), Option.some(plain))
        yield* queue.complete(claim)
      }))

    it.effect("a saved checkpoint that cannot be decoded fails load with one line that names --restart", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore
        const sql = yield* PgClient.PgClient
        const identity = JSON.stringify({ size: 1 })
        const rows: ReadonlyArray<readonly [string, ReadonlyArray<unknown>]> = [
          ["garbage JSON in identity", [1, "{not json", 1, 1, null]],
          ["a negative offset", [-5, identity, 1, 1, null]],
          ["a chunk size of zero", [1, identity, 0, 1, null]],
          ["garbage JSON in verification", [1, identity, 1, 1, "[oops"]],
          ["a prefix digest of the wrong type", [1, identity, 1, 1, "{\"prefixSha256\":7}"]],
          ["garbage JSON in the ranges", [1, identity, 1, 1, null, "[{"]],
          ["a range of the wrong shape", [1, identity, 1, 1, null, "[{\"end\":\"9\"}]"]]
        ]
        for (const [what, values] of rows) {
          const source = `https://example.com/${what.replaceAll(" ", "-")}`
          yield* sql.unsafe(
            `INSERT INTO checkpoints
              (source, destination, byte_offset, identity, chunk_size, updated_at, verification, done_ranges)
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
            [source, "/out/garbage.bin", ...values, ...(values.length === 5 ? [null] : [])]
          )
          const error = yield* store.load({ source, destination: "/out/garbage.bin" }).pipe(Effect.flip)
          assert.instanceOf(error, CheckpointStoreError, what)
          assert.strictEqual(
            error.message,
            `checkpoint store failed to load checkpoint: the saved checkpoint for ${source} cannot be read; ` +
              "run again with --restart to start over",
            what
          )
        }
      }))

    it.effect("the migrations are recorded, and building the store again migrates nothing twice", () =>
      Effect.gen(function*() {
        const url = yield* Database
        yield* Effect.scoped(Layer.build(CheckpointStorePg.layer(url)))
        yield* Effect.scoped(Layer.build(CheckpointStorePg.layer(url)))
        const sql = yield* PgClient.PgClient
        assert.deepStrictEqual(yield* recordedMigrations(sql), currentMigrations)
        const legacy = yield* sql.unsafe(`SELECT 1 FROM pg_tables WHERE tablename = 'streaming_reader_schema'`)
        assert.deepStrictEqual(legacy, [], "no table of the old bookkeeping in a new database")
      }))

    it.effect("a database from a newer schema version is refused", () =>
      Effect.gen(function*() {
        const url = yield* Database
        const sql = yield* PgClient.PgClient
        yield* sql.unsafe(`INSERT INTO effect_sql_migrations (migration_id, name) VALUES (99, 'future')`)
        const error = yield* Effect.scoped(Layer.build(CheckpointStorePg.layer(url))).pipe(
          Effect.flip,
          Effect.ensuring(Effect.orDie(sql.unsafe(`DELETE FROM effect_sql_migrations WHERE migration_id = 99`)))
        )
        assert.instanceOf(error, CheckpointStoreError)
        assert.strictEqual(error.reason, "schema version 99 is newer than this program supports (3)")
      }))
  })

  describe("opening", () => {
    it.scoped("workers starting together migrate a fresh database once", () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        yield* Effect.all(Array.from({ length: 6 }, () => Layer.build(CheckpointStorePg.layer(url))), {
          concurrency: "unbounded"
        })
        const sql = yield* rawClient(url)
        assert.deepStrictEqual(yield* recordedMigrations(sql), currentMigrations)
      }))

    it.scoped("workers starting together on a database of the version-table releases migrate it once", () =>
      Effect.gen(function*() {
        for (const version of [1, 2] as const) {
          const url = yield* freshDatabase
          const sql = yield* rawClient(url)
          yield* createLegacy(sql, version)
          const contexts = yield* Effect.all(
            Array.from(
              { length: 6 },
              (_, i) => i % 2 === 0 ? Layer.build(CheckpointStorePg.layer(url)) : Layer.build(JobQueuePg.layer(url))
            ),
            { concurrency: "unbounded" }
          )
          assert.strictEqual(contexts.length, 6)
          assert.deepStrictEqual(yield* recordedMigrations(sql), currentMigrations, `from version ${version}`)
        }
      }))

    it.scoped("a database of schema version 1 with a checkpoint in it migrates, and the checkpoint loads", () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const sql = yield* rawClient(url)
        const old = sample("/out/version-1.bin", 4 * 2 ** 32 + 3)
        yield* createLegacy(sql, 1)
        yield* sql.unsafe(
          `INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6)`,
          [old.key.source, old.key.destination, old.offset, JSON.stringify(old.identity), old.chunkSize, old.updatedAt]
        )
        const store = Context.get(yield* Layer.build(CheckpointStorePg.layer(url)), CheckpointStore)
        const loaded = Option.getOrThrow(yield* store.load(old.key))
        assert.deepStrictEqual(loaded, old)
        assert.isFalse("output" in loaded || "prefixSha256" in loaded, "an old row has neither check")
        const verified: Checkpoint = { ...old, prefixSha256: "ab".repeat(32) }
        yield* store.save(verified)
        assert.deepStrictEqual(yield* store.load(old.key), Option.some(verified))
        assert.deepStrictEqual(yield* recordedMigrations(sql), currentMigrations)
      }))

    it.scoped("a database the version-table releases left at version 2, with jobs and checkpoints, keeps working", () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const sql = yield* rawClient(url)
        yield* createLegacy(sql, 2)
        const old: Checkpoint = {
          ...sample("/out/version-2.bin", 3 * 2 ** 32 + 1),
          output: { dev: 64_769, ino: 2 ** 40 + 3, tailLength: 65_536, tailSha256: "5e".repeat(32) },
          prefixSha256: "77".repeat(32)
        }
        yield* sql.unsafe(
          `INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at, verification)
            VALUES ($1, $2, $3, $4, $5, $6, $7)`,
          [
            old.key.source,
            old.key.destination,
            old.offset,
            JSON.stringify(old.identity),
            old.chunkSize,
            old.updatedAt,
            verificationText(old)
          ]
        )
        const [job] = yield* sql.unsafe<{ readonly id: string }>(
          `INSERT INTO jobs (source, destination) VALUES ($1, $2) RETURNING id`,
          [old.key.source, old.key.destination]
        )
        const context = yield* Layer.build(Layer.merge(CheckpointStorePg.layer(url), JobQueuePg.layer(url)))
        const store = Context.get(context, CheckpointStore)
        const queue = Context.get(context, JobQueue)
        assert.deepStrictEqual(yield* store.load(old.key), Option.some(old))
        const claim = Option.getOrThrow(yield* queue.claim("worker-a"))
        assert.deepInclude(claim.job, { id: Number(job!.id), state: "running", epoch: 1, offset: old.offset })
        const next: Checkpoint = { ...old, offset: old.offset + 65_536, updatedAt: old.updatedAt + 1 }
        yield* queue.checkpoints(claim).save(next)
        assert.deepStrictEqual(yield* store.load(old.key), Option.some(next))
        yield* queue.checkpoints(claim).delete(old.key)
        yield* queue.complete(claim)
        assert.strictEqual((yield* queue.get(claim.job.id)).state, "done")
        const added = yield* queue.enqueue("https://example.com/new.bin", "/out/new.bin")
        assert.strictEqual(added.id, Number(job!.id) + 1, "the job ids go on from the old sequence")
        assert.deepStrictEqual(yield* recordedMigrations(sql), currentMigrations)
        const legacy = yield* sql.unsafe<{ readonly version: number }>(`SELECT version FROM streaming_reader_schema`)
        assert.deepStrictEqual(legacy.map((r) => r.version), [2], "the old bookkeeping is left as it was")
      }))

    it.scoped("a database the previous release left migrates: its checkpoint loads without ranges, saves with ranges land", () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const sql = yield* rawClient(url)
        yield* createPreviousRelease(sql)
        const old: Checkpoint = {
          ...sample("/out/previous-release.bin", 3 * 2 ** 32 + 1),
          output: { dev: 64_769, ino: 2 ** 40 + 3, tailLength: 65_536, tailSha256: "5e".repeat(32) },
          prefixSha256: "77".repeat(32)
        }
        yield* savePreviousRelease(sql, old)
        yield* sql.unsafe(`INSERT INTO jobs (source, destination) VALUES ($1, $2)`, [
          old.key.source,
          old.key.destination
        ])
        // Workers starting together, stores and queues alike, add the column once.
        const [stores, queues] = yield* Effect.all([
          Effect.all(Array.from({ length: 3 }, () => Layer.build(CheckpointStorePg.layer(url))), {
            concurrency: "unbounded"
          }),
          Effect.all(Array.from({ length: 3 }, () => Layer.build(JobQueuePg.layer(url))), { concurrency: "unbounded" })
        ], { concurrency: "unbounded" })
        assert.deepStrictEqual(yield* recordedMigrations(sql), currentMigrations)
        const store = Context.get(stores[0]!, CheckpointStore)
        const queue = Context.get(queues[0]!, JobQueue)
        const loaded = Option.getOrThrow(yield* store.load(old.key))
        assert.deepStrictEqual(loaded, old)
        assert.isFalse("ranges" in loaded, "an old row has no ranges")
        assert.isFalse("tailEnd" in loaded.output!, "an old row's tail check ends at the offset")
        const segmented: Checkpoint = {
          ...old,
          output: { ...old.output!, tailEnd: old.offset + 3 * 2 ** 20 },
          ranges: [{ start: old.offset + 2 ** 20, end: old.offset + 3 * 2 ** 20 }]
        }
        const claim = Option.getOrThrow(yield* queue.claim("worker-a"))
        yield* queue.checkpoints(claim).save(segmented)
        assert.deepStrictEqual(yield* store.load(old.key), Option.some(segmented))
        const stored = yield* sql.unsafe<{ readonly done_ranges: string | null }>(`SELECT done_ranges FROM checkpoints`)
        assert.deepStrictEqual(stored, [{ done_ranges: JSON.stringify(segmented.ranges) }])
        yield* store.save(old)
        assert.deepStrictEqual(yield* queue.checkpoints(claim).load(old.key), Option.some(old))
        yield* queue.complete(claim)
      }))

    it.effect("a wrong password fails the layer with CheckpointStoreError and never shows the password", () =>
      Effect.gen(function*() {
        const url = wrongPasswordUrl(postgresUrl!)
        const error = yield* Effect.scoped(Layer.build(CheckpointStorePg.layer(url))).pipe(Effect.flip)
        assert.instanceOf(error, CheckpointStoreError)
        assert.match(error.reason, /password authentication failed/)
        assert.notInclude(error.message, "certainly-not-the-password")
        assert.include(error.operation, "postgres://***@")
      }))

    it.effect("a URL that is not postgres:// fails with CheckpointStoreError", () =>
      Effect.gen(function*() {
        const error = yield* Effect.scoped(Layer.build(CheckpointStorePg.layer("mysql://u:secret@host/db"))).pipe(
          Effect.flip
        )
        assert.strictEqual(
          error.reason,
          "unsupported scheme mysql: (expected postgres://user:password@host:port/database)"
        )
        assert.notInclude(error.message, "secret")
      }))

    it.scoped("layerConfig reads STREAMING_READER_POSTGRES_URL", () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const context = yield* Layer.build(CheckpointStorePg.layerConfig).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["STREAMING_READER_POSTGRES_URL", url]])))
        )
        const store = Context.get(context, CheckpointStore)
        yield* store.save(sample("/out/config.bin", 7))
        assert.deepStrictEqual(
          yield* store.load(sample("/out/config.bin", 0).key),
          Option.some(sample("/out/config.bin", 7))
        )
        const missing = yield* Layer.build(CheckpointStorePg.layerConfig).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map())),
          Effect.flip
        )
        assert.isTrue(ConfigError.isConfigError(missing) && ConfigError.isMissingDataOnly(missing))
      }))
  })
})
