import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
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
      assert.strictEqual(version, 1)
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
          reason: "schema version 99 is newer than this program supports (1)"
        })
      )
    }))

  it.effect("a stored checkpoint that no longer decodes fails load with CheckpointStoreError", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Effect.provide(Effect.void, CheckpointStoreSqlite.layer(path))
      yield* SqlClient.SqlClient.pipe(
        Effect.flatMap((sql) =>
          sql`INSERT INTO checkpoints (source, destination, byte_offset, identity, chunk_size, updated_at)
            VALUES ('s', 'd', 1, 'not json', 1, 1)`
        ),
        Effect.provide(rawClient(path))
      )
      const error = yield* CheckpointStore.pipe(
        Effect.flatMap((store) => store.load({ source: "s", destination: "d" })),
        Effect.provide(CheckpointStoreSqlite.layer(path)),
        Effect.flip
      )
      assert.instanceOf(error, CheckpointStoreError)
      assert.strictEqual(error.operation, "load checkpoint")
      assert.match(error.reason, /^stored checkpoint is invalid: /)
    }))

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
