import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option } from "effect"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import * as CheckpointStoreSqlite from "../../src/layers/CheckpointStoreSqlite.js"
import { CheckpointStore, CheckpointStoreError } from "../../src/services/CheckpointStore.js"
import type { Checkpoint } from "../../src/services/CheckpointStore.js"
import { encodeCheckpointRow, rangesText, verificationText } from "../../src/layers/CheckpointRows.js"
import { arbitraryCheckpoint, checkpointStoreContract } from "./CheckpointStore.contract.js"

const root = mkdtempSync(join(tmpdir(), "checkpoint-store-sqlite-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

let counter = 0
/** A database path in a directory that does not exist yet. */
const freshPath = () => join(root, `case-${++counter}`, "nested", "state.db")

/** A second, plain connection to the same file, to look at what the store wrote. */
const rawClient = (filename: string) => SqliteClient.layer({ filename, disableWAL: true })

interface SqliteDatabase {
  exec(sql: string): void
  pragma(pragma: string, options?: { readonly simple?: boolean }): unknown
  prepare(sql: string): { run(...params: ReadonlyArray<unknown>): unknown }
  close(): void
}

/** better-sqlite3 itself: a connection of its own, outside the store and its client. */
const Database = createRequire(import.meta.url)("better-sqlite3") as new(path: string) => SqliteDatabase

/** A direct connection to `filename`, closed with the scope. */
const direct = (filename: string) =>
  Effect.acquireRelease(Effect.sync(() => new Database(filename)), (db) => Effect.sync(() => db.close()))

/** A direct connection that holds the write lock on `filename` (`BEGIN EXCLUSIVE`) until `release` or the scope closes. */
const holdLock = (filename: string) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        const db = new Database(filename)
        db.exec("BEGIN EXCLUSIVE")
        return db
      }),
      (db) => Effect.sync(() => db.close())
    ),
    (db) => ({ release: Effect.sync(() => db.exec("COMMIT")) })
  )

/** The hand-written migrations of the releases that counted schema versions in `PRAGMA user_version`. */
const legacyMigrations: ReadonlyArray<string> = [
  `CREATE TABLE IF NOT EXISTS checkpoints (
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    byte_offset INTEGER NOT NULL,
    identity TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, destination)
  )`,
  `ALTER TABLE checkpoints ADD COLUMN verification TEXT`
]

/**
 * A database as those releases left it at schema `version` (1 or 2), with `checkpoint` saved in
 * it: the same pragmas, migration transaction and version bookkeeping, and the same row.
 */
const createLegacy = (filename: string, version: 1 | 2, checkpoint: Checkpoint) => {
  mkdirSync(dirname(filename), { recursive: true })
  const db = new Database(filename)
  try {
    db.pragma("journal_mode = WAL")
    db.pragma("synchronous = NORMAL")
    db.exec("BEGIN IMMEDIATE")
    for (const migration of legacyMigrations.slice(0, version)) db.exec(migration)
    db.pragma(`user_version = ${version}`)
    db.exec("COMMIT")
    const columns = [
      checkpoint.key.source,
      checkpoint.key.destination,
      checkpoint.offset,
      JSON.stringify(checkpoint.identity),
      checkpoint.chunkSize,
      checkpoint.updatedAt
    ]
    if (version === 1) {
      db.prepare(`INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)`).run(...columns)
    } else {
      db.prepare(
        `INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at, verification)
        VALUES (?, ?, ?, ?, ?, ?, ?)`
      ).run(...columns, verificationText(checkpoint))
    }
  } finally {
    db.close()
  }
}

/**
 * A database as the release whose migrator ran `1_checkpoints` and `2_verification` left it, with
 * `checkpoint` (no ranges, no tail end) saved in it: the same pragmas, the migrator's table and
 * record, the same steps and the same row. Frozen: it is that release, not this one.
 */
const createPreviousRelease = (filename: string, checkpoint: Checkpoint) => {
  mkdirSync(dirname(filename), { recursive: true })
  const db = new Database(filename)
  try {
    db.pragma("journal_mode = WAL")
    db.pragma("synchronous = NORMAL")
    db.exec(`CREATE TABLE IF NOT EXISTS effect_sql_migrations (
      migration_id integer PRIMARY KEY NOT NULL,
      created_at datetime NOT NULL DEFAULT current_timestamp,
      name VARCHAR(255) NOT NULL
    )`)
    db.exec("BEGIN")
    db.exec(`INSERT INTO effect_sql_migrations (migration_id, name) VALUES (1, 'checkpoints'), (2, 'verification')`)
    db.exec(`CREATE TABLE IF NOT EXISTS checkpoints (
      source TEXT NOT NULL,
      destination TEXT NOT NULL,
      byte_offset INTEGER NOT NULL,
      identity TEXT NOT NULL,
      chunk_size INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      PRIMARY KEY (source, destination)
    )`)
    db.exec(`ALTER TABLE checkpoints ADD COLUMN verification TEXT`)
    db.exec("COMMIT")
    const { output, prefixSha256 } = checkpoint
    const verification = output === undefined && prefixSha256 === undefined ? null : JSON.stringify({
      ...(output === undefined
        ? {}
        : {
          output: { dev: output.dev, ino: output.ino, tailLength: output.tailLength, tailSha256: output.tailSha256 }
        }),
      ...(prefixSha256 === undefined ? {} : { prefixSha256 })
    })
    db.prepare(
      `INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at, verification)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (source, destination) DO UPDATE SET
        byte_offset = excluded.byte_offset, identity = excluded.identity,
        chunk_size = excluded.chunk_size, updated_at = excluded.updated_at,
        verification = excluded.verification`
    ).run(
      checkpoint.key.source,
      checkpoint.key.destination,
      checkpoint.offset,
      JSON.stringify(checkpoint.identity),
      checkpoint.chunkSize,
      checkpoint.updatedAt,
      verification
    )
  } finally {
    db.close()
  }
}

/** The migrations recorded in `filename`, as `[id, name]`. */
const recordedMigrations = (filename: string) =>
  SqlClient.SqlClient.pipe(
    Effect.flatMap((sql) =>
      sql<
        { readonly migration_id: number; readonly name: string }
      >`SELECT migration_id, name FROM effect_sql_migrations ORDER BY migration_id`
    ),
    Effect.map((rows): ReadonlyArray<readonly [number, string]> => rows.map((row) => [row.migration_id, row.name])),
    Effect.provide(rawClient(filename))
  )

/** The user_version of `filename`. */
const userVersion = (filename: string) =>
  SqlClient.SqlClient.pipe(
    Effect.flatMap((sql) => sql<{ readonly user_version: number }>`PRAGMA user_version`),
    Effect.map((rows) => rows[0]?.user_version),
    Effect.provide(rawClient(filename))
  )

const sample: Checkpoint = {
  key: { source: "https://example.com/video.mp4", destination: "/out/video.mp4" },
  offset: 5 * 2 ** 32 + 17,
  identity: { size: 6 * 2 ** 32, etag: "\"e-1\"", lastModified: "Tue, 14 Nov 2023 22:13:20 GMT", mtimeMs: 12.5 },
  chunkSize: 128 * 1024,
  updatedAt: 1_700_000_000_000
}

/** `sample` with both checks, as the release with schema version 2 saved it. */
const verifiedSample: Checkpoint = {
  ...sample,
  output: { dev: 64_769, ino: 2 ** 36 + 5, tailLength: 65_536, tailSha256: "9f".repeat(32) },
  prefixSha256: "3c".repeat(32)
}

/** The migrations this release records. */
const currentMigrations: ReadonlyArray<readonly [number, string]> = [
  [1, "checkpoints"],
  [2, "verification"],
  [3, "ranges"]
]

/** `verifiedSample` as a read over several segments saves it: ranges past the offset, the tail check at the last one. */
const segmentedSample: Checkpoint = {
  ...verifiedSample,
  output: { ...verifiedSample.output!, tailEnd: sample.offset + 3 * 2 ** 20 },
  ranges: [{ start: sample.offset + 2 ** 20, end: sample.offset + 3 * 2 ** 20 }]
}

checkpointStoreContract("CheckpointStoreSqlite", () => CheckpointStoreSqlite.layer(freshPath()))

describe("CheckpointStoreSqlite", () => {
  it.effect("creates the parent directories of the database file", () =>
    Effect.gen(function*() {
      const path = freshPath()
      assert.isFalse(existsSync(path))
      yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path))
      assert.isTrue(existsSync(path))
    }))

  it.effect("checkpoints persist when the store is closed and opened again", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* CheckpointStore.pipe(
        Effect.flatMap((store) => store.save(sample)),
        Effect.provide(CheckpointStoreSqlite.layer(path))
      )
      const loaded = yield* CheckpointStore.pipe(
        Effect.flatMap((store) => store.load(sample.key)),
        Effect.provide(CheckpointStoreSqlite.layer(path))
      )
      assert.deepStrictEqual(loaded, Option.some(sample))
      yield* CheckpointStore.pipe(
        Effect.flatMap((store) => store.delete(sample.key)),
        Effect.provide(CheckpointStoreSqlite.layer(path))
      )
      const afterDelete = yield* CheckpointStore.pipe(
        Effect.flatMap((store) => store.load(sample.key)),
        Effect.provide(CheckpointStoreSqlite.layer(path))
      )
      assert.deepStrictEqual(afterDelete, Option.none())
    }))

  it.effect("the database is in WAL mode with the migrations recorded", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path))
      const mode = yield* SqlClient.SqlClient.pipe(
        Effect.flatMap((sql) => sql<{ readonly journal_mode: string }>`PRAGMA journal_mode`),
        Effect.provide(rawClient(path))
      )
      assert.strictEqual(mode[0]?.journal_mode, "wal")
      assert.deepStrictEqual(yield* recordedMigrations(path), currentMigrations)
      yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path))
      assert.deepStrictEqual(yield* recordedMigrations(path), currentMigrations, "opening again runs nothing twice")
    }))

  it.effect("a file that is not a database fails the layer with CheckpointStoreError", () =>
    Effect.gen(function*() {
      const path = join(root, "garbage.db")
      writeFileSync(path, Buffer.from("this is certainly not a SQLite database, just some text ".repeat(100)))
      const error = yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path)).pipe(Effect.flip)
      assert.instanceOf(error, CheckpointStoreError)
      assert.strictEqual(error.operation, `open database ${path}`)
      assert.strictEqual(error.reason, "file is not a database")
    }))

  it.effect("a directory that cannot be created fails the layer with CheckpointStoreError", () =>
    Effect.gen(function*() {
      const blocker = join(root, "a-regular-file")
      writeFileSync(blocker, "x")
      const path = join(blocker, "sub", "state.db")
      const error = yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path)).pipe(Effect.flip)
      assert.instanceOf(error, CheckpointStoreError)
      assert.strictEqual(error.operation, `create the directory of ${path}`)
      assert.match(error.reason, /ENOTDIR|EEXIST/)
    }))

  it.effect("a path that names a directory fails the layer with CheckpointStoreError", () =>
    Effect.gen(function*() {
      const path = mkdtempSync(join(root, "dir-"))
      const error = yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path)).pipe(Effect.flip)
      assert.instanceOf(error, CheckpointStoreError)
      assert.strictEqual(error.operation, `open database ${path}`)
    }))

  it.effect("a database from a newer schema version is refused, one step newer too", () =>
    Effect.gen(function*() {
      for (const future of [4, 99]) {
        const path = freshPath()
        yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path))
        yield* SqlClient.SqlClient.pipe(
          Effect.flatMap((sql) =>
            sql`INSERT INTO effect_sql_migrations (migration_id, name) VALUES (${future}, 'future')`
          ),
          Effect.provide(rawClient(path))
        )
        const error = yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path)).pipe(Effect.flip)
        assert.deepStrictEqual(
          error,
          new CheckpointStoreError({
            operation: `open database ${path}`,
            reason: `schema version ${future} is newer than this program supports (3)`
          })
        )
      }
    }))

  it.effect("a database the previous release left migrates: its checkpoint loads without ranges, saves with ranges land", () =>
    Effect.gen(function*() {
      const path = freshPath()
      createPreviousRelease(path, verifiedSample)
      const store = yield* Effect.provide(CheckpointStore, yield* Layer.build(CheckpointStoreSqlite.layer(path)))
      const loaded = Option.getOrThrow(yield* store.load(sample.key))
      assert.deepStrictEqual(loaded, verifiedSample)
      assert.isFalse("ranges" in loaded, "an old row has no ranges")
      assert.isFalse("tailEnd" in loaded.output!, "an old row's tail check ends at the offset")
      assert.deepStrictEqual(yield* recordedMigrations(path), currentMigrations)
      yield* store.save(segmentedSample)
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(segmentedSample))
      const reopened = yield* Effect.provide(CheckpointStore, yield* Layer.build(CheckpointStoreSqlite.layer(path)))
      assert.deepStrictEqual(yield* reopened.load(sample.key), Option.some(segmentedSample))
      const stored = yield* SqlClient.SqlClient.pipe(
        Effect.flatMap((sql) => sql<{ readonly done_ranges: string | null }>`SELECT done_ranges FROM checkpoints`),
        Effect.provide(rawClient(path))
      )
      assert.deepStrictEqual(stored, [{ done_ranges: JSON.stringify(segmentedSample.ranges) }])
      yield* reopened.save(verifiedSample)
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(verifiedSample))
    }).pipe(Effect.scoped))

  it.effect.prop("the hand-built columns of a save are the text encodeCheckpointRow gives", [arbitraryCheckpoint], ([
    checkpoint
  ]) =>
    Effect.gen(function*() {
      const row = yield* encodeCheckpointRow(checkpoint)
      assert.strictEqual(verificationText(checkpoint), row.verification)
      assert.strictEqual(rangesText(checkpoint), row.done_ranges)
    }), { fastCheck: { numRuns: 200 } })

  it.effect("a database of schema version 1 with a checkpoint in it migrates, and the checkpoint loads", () =>
    Effect.gen(function*() {
      const path = freshPath()
      createLegacy(path, 1, sample)
      const store = yield* Effect.provide(CheckpointStore, yield* Layer.build(CheckpointStoreSqlite.layer(path)))
      const loaded = Option.getOrThrow(yield* store.load(sample.key))
      assert.deepStrictEqual(loaded, sample)
      assert.isFalse("output" in loaded || "prefixSha256" in loaded, "an old row has neither check")
      const verified: Checkpoint = {
        ...sample,
        offset: sample.offset + 1,
        output: { dev: 1, ino: 2, tailLength: 3, tailSha256: "ab".repeat(32) },
        prefixSha256: "cd".repeat(32)
      }
      yield* store.save(verified)
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(verified))
      assert.deepStrictEqual(yield* recordedMigrations(path), currentMigrations)
    }).pipe(Effect.scoped))

  it.effect("a database the user_version releases left at version 2 opens as it is: its checkpoint loads, saves land", () =>
    Effect.gen(function*() {
      const path = freshPath()
      createLegacy(path, 2, verifiedSample)
      const store = yield* Effect.provide(CheckpointStore, yield* Layer.build(CheckpointStoreSqlite.layer(path)))
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(verifiedSample))
      const next: Checkpoint = {
        ...verifiedSample,
        offset: verifiedSample.offset + 65_536,
        updatedAt: sample.updatedAt + 1
      }
      yield* store.save(next)
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(next))
      const other = { source: "https://example.com/other.bin", destination: "/out/other.bin" }
      yield* store.save({ ...sample, key: other })
      assert.deepStrictEqual(yield* store.load(other), Option.some({ ...sample, key: other }))
      yield* store.delete(other)
      assert.deepStrictEqual(yield* store.load(other), Option.none())
      assert.deepStrictEqual(yield* recordedMigrations(path), currentMigrations)
      assert.strictEqual(yield* userVersion(path), 2, "the old bookkeeping is left as it was")
      const reopened = yield* Effect.provide(CheckpointStore, yield* Layer.build(CheckpointStoreSqlite.layer(path)))
      assert.deepStrictEqual(yield* reopened.load(sample.key), Option.some(next))
    }).pipe(Effect.scoped))

  it.live("stores opening one database at once migrate it once, and each of them works", () =>
    Effect.gen(function*() {
      for (const legacy of [undefined, 1, 2, "previous release"] as const) {
        const path = freshPath()
        if (legacy === "previous release") createPreviousRelease(path, sample)
        else if (legacy !== undefined) createLegacy(path, legacy, sample)
        const contexts = yield* Effect.all(
          Array.from({ length: 6 }, () => Layer.build(CheckpointStoreSqlite.layer(path))),
          { concurrency: "unbounded" }
        )
        yield* Effect.forEach(contexts, (context, i) =>
          Effect.gen(function*() {
            const store = yield* Effect.provide(CheckpointStore, context)
            const key = { source: `https://example.com/${i}.bin`, destination: `/out/${i}.bin` }
            yield* store.save({ ...segmentedSample, key })
            assert.deepStrictEqual(yield* store.load(key), Option.some({ ...segmentedSample, key }))
          }), { concurrency: "unbounded", discard: true })
        assert.deepStrictEqual(yield* recordedMigrations(path), currentMigrations, `from ${legacy ?? "nothing"}`)
      }
    }).pipe(Effect.scoped))

  it.effect("a saved checkpoint that cannot be decoded fails load with one line that names --restart", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const store = yield* Effect.provide(CheckpointStore, yield* Layer.build(CheckpointStoreSqlite.layer(path)))
      const db = yield* direct(path)
      const insert = db.prepare(`INSERT OR REPLACE INTO checkpoints
        (source, destination, byte_offset, identity, chunk_size, updated_at, verification, done_ranges)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
      const identity = JSON.stringify(sample.identity)
      const textTailEnd = JSON.stringify({ output: { ...verifiedSample.output, tailEnd: "x" } })
      const rows: ReadonlyArray<readonly [string, ReadonlyArray<unknown>]> = [
        ["garbage JSON in identity", [1, "{not json", 1, 1, null, null]],
        ["an identity of the wrong shape", [1, "{\"size\":\"big\"}", 1, 1, null, null]],
        ["a negative offset", [-5, identity, 1, 1, null, null]],
        ["a fractional offset", [1.5, identity, 1, 1, null, null]],
        ["a chunk size that is text", [1, identity, "abc", 1, null, null]],
        ["a chunk size of zero", [1, identity, 0, 1, null, null]],
        ["garbage JSON in verification", [1, identity, 1, 1, "[oops", null]],
        ["an output check of the wrong shape", [1, identity, 1, 1, "{\"output\":{\"dev\":1}}", null]],
        ["a tail end that is text", [1, identity, 1, 1, textTailEnd, null]],
        ["garbage JSON in the ranges", [1, identity, 1, 1, null, "[{"]],
        ["a range of the wrong shape", [1, identity, 1, 1, null, "[{\"start\":5}]"]]
      ]
      for (const [what, values] of rows) {
        const source = `https://example.com/${what.replaceAll(" ", "-")}`
        insert.run(source, "/out/garbage.bin", ...values)
        const error = yield* store.load({ source, destination: "/out/garbage.bin" }).pipe(Effect.flip)
        assert.instanceOf(error, CheckpointStoreError, what)
        assert.deepStrictEqual(
          { operation: error.operation, reason: error.reason },
          {
            operation: "load checkpoint",
            reason: `the saved checkpoint for ${source} cannot be read; run again with --restart to start over`
          },
          what
        )
        assert.strictEqual(
          error.message,
          `checkpoint store failed to load checkpoint: the saved checkpoint for ${source} cannot be read; ` +
            "run again with --restart to start over",
          what
        )
      }
    }).pipe(Effect.scoped))

  it.live("a lock another connection holds for a moment delays saves, which then land", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const store = yield* Effect.provide(CheckpointStore, yield* Layer.build(CheckpointStoreSqlite.layer(path)))
      yield* store.save(sample)
      const lock = yield* holdLock(path)
      const saves = yield* Effect.fork(
        Effect.forEach([1, 2, 3], (n) => store.save({ ...sample, offset: sample.offset + n }), { discard: true })
      )
      yield* Effect.sleep("300 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(saves)), "the saves wait while the lock is held")
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(sample), "reads go on meanwhile")
      yield* lock.release
      yield* Fiber.join(saves)
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some({ ...sample, offset: sample.offset + 3 }))
    }).pipe(Effect.scoped))

  it.live("a lock held past the bound fails a save with one line naming the state database", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const layer = CheckpointStoreSqlite.layer(path, { busyTimeoutMs: 500 })
      const store = yield* Effect.provide(CheckpointStore, yield* Layer.build(layer))
      yield* store.save(sample)
      yield* holdLock(path)
      const error = yield* store.save({ ...sample, offset: sample.offset + 1 }).pipe(Effect.flip)
      assert.deepStrictEqual(
        error,
        new CheckpointStoreError({
          operation: "save checkpoint",
          reason: `the state database ${path} is locked by another process (gave up after 500ms)`
        })
      )
      assert.notInclude(error.message, "\n")
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(sample), "the failed save changed nothing")
    }).pipe(Effect.scoped))

  it.live("opening a database that needs migrating waits for the lock too, and gives up past the bound", () =>
    Effect.gen(function*() {
      const path = freshPath()
      createLegacy(path, 1, sample)
      const lock = yield* holdLock(path)
      const error = yield* Layer.build(CheckpointStoreSqlite.layer(path, { busyTimeoutMs: 500 })).pipe(Effect.flip)
      assert.deepStrictEqual(
        error,
        new CheckpointStoreError({
          operation: `migrate database ${path}`,
          reason: `the state database ${path} is locked by another process (gave up after 500ms)`
        })
      )
      const opening = yield* Effect.fork(Layer.build(CheckpointStoreSqlite.layer(path)))
      yield* Effect.sleep("100 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(opening)), "opening waits while the lock is held")
      yield* lock.release
      const store = yield* Effect.provide(CheckpointStore, yield* Fiber.join(opening))
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(sample))
    }).pipe(Effect.scoped))

  it.live("a migration that meets another process's lock waits for it, and never opens a database half migrated", () =>
    Effect.gen(function*() {
      const path = freshPath()
      createLegacy(path, 1, sample)
      // As a release whose schema ended at migration 1 would have left it.
      const db = new Database(path)
      db.exec(`CREATE TABLE effect_sql_migrations (
        migration_id integer PRIMARY KEY NOT NULL,
        created_at datetime NOT NULL DEFAULT current_timestamp,
        name VARCHAR(255) NOT NULL
      )`)
      db.prepare(`INSERT INTO effect_sql_migrations (migration_id, name) VALUES (1, 'checkpoints')`).run()
      db.close()
      const lock = yield* holdLock(path)
      const opening = yield* Effect.fork(Layer.build(CheckpointStoreSqlite.layer(path)))
      yield* Effect.sleep("300 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(opening)), "opening waits while the lock is held")
      yield* lock.release
      const store = yield* Effect.provide(CheckpointStore, yield* Fiber.join(opening))
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(sample))
      yield* store.save(verifiedSample)
      assert.deepStrictEqual(yield* store.load(sample.key), Option.some(verifiedSample))
      assert.deepStrictEqual(yield* recordedMigrations(path), currentMigrations)
    }).pipe(Effect.scoped))

  it.effect("two stores on the same file see each other's saves", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const context = yield* Layer.build(CheckpointStoreSqlite.layer(path))
      const other = yield* Layer.build(CheckpointStoreSqlite.layer(path))
      const first = yield* Effect.provide(CheckpointStore, context)
      const second = yield* Effect.provide(CheckpointStore, other)
      yield* first.save(sample)
      assert.deepStrictEqual(yield* second.load(sample.key), Option.some(sample))
    }).pipe(Effect.scoped))
})
