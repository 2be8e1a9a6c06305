/**
 * A state database opened directly with better-sqlite3, for tests that look at the rows the
 * checkpoint store wrote.
 */
import { createRequire } from "node:module"

/** The part of a better-sqlite3 database the tests use. */
export interface SqliteDatabase {
  prepare(sql: string): { all(): ReadonlyArray<unknown> }
  close(): void
}

/** better-sqlite3's `Database` constructor. */
export const Database = createRequire(import.meta.url)("better-sqlite3") as new(
  path: string,
  options?: object
) => SqliteDatabase
