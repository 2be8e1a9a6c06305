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
import { checkpointStoreContract } from "./CheckpointStore.contract.js"

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

/** The `checkpoints` table and schema version as the first release of the store created them. */
const createVersion1 = (filename: string) => {
  mkdirSync(dirname(filename), { recursive: true })
  const db = new Database(filename)
  try {
    db.exec(`CREATE TABLE IF NOT EXISTS checkpoints (
      source TEXT NOT NULL,
      destination TEXT NOT NULL,
      byte_offset INTEGER NOT NULL,
      identity TEXT NOT NULL,
      chunk_size INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      PRIMARY KEY (source, destination)
    )`)
    db.pragma("journal_mode = WAL")
    db.pragma("user_version = 1")
    db.prepare(`INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at)
      VALUES (?, ?, ?, ?, ?, ?)`).run(
      sample.key.source,
      sample.key.destination,
      sample.offset,
      JSON.stringify(sample.identity),
      sample.chunkSize,
      sample.updatedAt
    )
  } finally {
    db.close()
  }
}

const sample: Checkpoint = {
  key: { source: "https://example.com/video.mp4", destination: "/out/video.mp4" },
  offset: 5 * 2 ** 32 + 17,
  identity: { size: 6 * 2 ** 32, etag: "\"e-1\"", lastModified: "Tue, 14 Nov 2023 22:13:20 GMT", mtimeMs: 12.5 },
  chunkSize: 128 * 1024,
  updatedAt: 1_700_000_000_000
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

  it.effect("the database is in WAL mode with the schema version recorded", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path))
      const [mode, version] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const mode = yield* sql<{ readonly journal_mode: string }>`PRAGMA journal_mode`
        const version = yield* sql<{ readonly user_version: number }>`PRAGMA user_version`
        return [mode[0]?.journal_mode, version[0]?.user_version] as const
      }).pipe(Effect.provide(rawClient(path)))
      assert.strictEqual(mode, "wal")
      assert.strictEqual(version, 2)
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

  it.effect("a database from a newer schema version is refused", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path))
      yield* SqlClient.SqlClient.pipe(
        Effect.flatMap((sql) => sql`PRAGMA user_version = 99`),
        Effect.provide(rawClient(path))
      )
      const error = yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path)).pipe(Effect.flip)
      assert.deepStrictEqual(
        error,
        new CheckpointStoreError({
          operation: `open database ${path}`,
          reason: "schema version 99 is newer than this program supports (2)"
        })
      )
    }))

  it.effect("a database of schema version 1 with a checkpoint in it migrates, and the checkpoint loads", () =>
    Effect.gen(function*() {
      const path = freshPath()
      createVersion1(path)
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
      const version = yield* SqlClient.SqlClient.pipe(
        Effect.flatMap((sql) => sql<{ readonly user_version: number }>`PRAGMA user_version`),
        Effect.provide(rawClient(path))
      )
      assert.deepStrictEqual(version, [{ user_version: 2 }])
    }).pipe(Effect.scoped))

  it.effect("a saved checkpoint that cannot be decoded fails load with one line that names --restart", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const store = yield* Effect.provide(CheckpointStore, yield* Layer.build(CheckpointStoreSqlite.layer(path)))
      const db = yield* direct(path)
      const insert = db.prepare(`INSERT OR REPLACE INTO checkpoints
        (source, destination, byte_offset, identity, chunk_size, updated_at, verification) VALUES (?, ?, ?, ?, ?, ?, ?)`)
      const identity = JSON.stringify(sample.identity)
      const rows: ReadonlyArray<readonly [string, ReadonlyArray<unknown>]> = [
        ["garbage JSON in identity", [1, "{not json", 1, 1, null]],
        ["an identity of the wrong shape", [1, "{\"size\":\"big\"}", 1, 1, null]],
        ["a negative offset", [-5, identity, 1, 1, null]],
        ["a fractional offset", [1.5, identity, 1, 1, null]],
        ["a chunk size that is text", [1, identity, "abc", 1, null]],
        ["a chunk size of zero", [1, identity, 0, 1, null]],
        ["garbage JSON in verification", [1, identity, 1, 1, "[oops"]],
        ["an output check of the wrong shape", [1, identity, 1, 1, "{\"output\":{\"dev\":1}}"]]
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
      createVersion1(path)
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
