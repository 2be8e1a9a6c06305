/**
 * The PostgreSQL server the tests use (`STREAMING_READER_TEST_POSTGRES_URL`, see `.ci/postgres.sh`):
 * a fresh database per test file, and a visible notice when the tests are skipped. In CI
 * (`CI=true`) a missing URL fails the tests instead of skipping them.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"

/** The test server's URL (a role that may create databases), if one is configured. */
export const postgresUrl: string | undefined = process.env["STREAMING_READER_TEST_POSTGRES_URL"] || undefined

const inCi = process.env["CI"] === "true"

/** Whether the PostgreSQL tests are skipped: no server configured, and not in CI (where they must run). */
export const skipPostgres: boolean = postgresUrl === undefined && !inCi

if (skipPostgres) {
  console.warn(
    "NOTICE: PostgreSQL tests SKIPPED: STREAMING_READER_TEST_POSTGRES_URL is not set " +
      "(start a throwaway server with: eval \"$(.ci/postgres.sh start)\")"
  )
}

const requireUrl: Effect.Effect<string> = postgresUrl === undefined
  ? Effect.dieMessage(
    "STREAMING_READER_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL tests (.ci/postgres.sh)"
  )
  : Effect.succeed(postgresUrl)

/** A connection to the database at `url` (no migrations), closed with the scope. */
export const rawClient = (url: string): Effect.Effect<PgClient.PgClient, never, Scope.Scope> =>
  PgClient.make({ url: Redacted.make(url) }).pipe(Effect.provide(Reactivity.layer), Effect.orDie)

/** `url` pointing at another database on the same server. */
export const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.href
}

/** The test server's URL with a password that is not the role's. */
export const wrongPasswordUrl = (url: string): string => {
  const parsed = new URL(url)
  parsed.password = "certainly-not-the-password"
  return parsed.href
}

/** A new, empty database with a random name, dropped (connections and all) when the scope closes; its URL. */
export const freshDatabase: Effect.Effect<string, never, Scope.Scope> = Effect.gen(function*() {
  const url = yield* requireUrl
  const name = `streaming_reader_test_${randomBytes(6).toString("hex")}`
  yield* Effect.acquireRelease(
    Effect.scoped(Effect.flatMap(rawClient(url), (sql) => sql.unsafe(`CREATE DATABASE ${name}`))).pipe(Effect.orDie),
    () =>
      Effect.scoped(Effect.flatMap(rawClient(url), (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)))
        .pipe(Effect.orDie)
  )
  return withDatabase(url, name)
})
