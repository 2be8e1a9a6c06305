import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import * as JobQueuePg from "../../src/layers/JobQueuePg.js"
import { JobQueue, LeaseLost, QueueUnavailable, UnknownJob } from "../../src/services/JobQueue.js"
import type { Claim } from "../../src/services/JobQueue.js"
import { unusedPort } from "../support/httpServer.js"
import { freshDatabase, postgresUrl, rawClient, skipPostgres, wrongPasswordUrl } from "../support/postgres.js"

/** The URL of this file's database. */
class Database extends Context.Tag("test/Database")<Database, string>() {}

const leaseMs = 30_000
const backoffMs = 60_000

/** The queue under test and a raw client on the same fresh database. */
const Env = Layer.unwrapEffect(Effect.map(Database, (url) =>
  Layer.merge(
    JobQueuePg.layer(url, { lease: leaseMs, maxAttempts: 3, retryBackoff: backoffMs, maxRetryBackoff: 3 * backoffMs }),
    Layer.scoped(PgClient.PgClient, rawClient(url))
  ))).pipe(Layer.provideMerge(Layer.scoped(Database, freshDatabase)))

/** Runs `statement` on the raw client. */
const exec = (statement: string, params: ReadonlyArray<unknown> = []) =>
  Effect.flatMap(PgClient.PgClient, (sql) => sql.unsafe<Record<string, unknown>>(statement, params))

/** The database's clock, in milliseconds. */
const dbNow = Effect.map(
  exec(`SELECT (extract(epoch FROM now()) * 1000)::float8 AS now`),
  (rows) => rows[0]!["now"] as number
)

/** Empties the queue, so each test sees only its own jobs. */
const clear = exec(`TRUNCATE jobs, checkpoints RESTART IDENTITY`)

/** Lets the lease of `claim` run out now. */
const expire = (claim: Claim) =>
  exec(`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [claim.job.id])

/** Makes a backing-off job due now. */
const due = (id: number) => exec(`UPDATE jobs SET available_at = now() WHERE id = $1`, [id])

const claimOne = (worker: string) =>
  Effect.flatMap(JobQueue, (queue) => queue.claim(worker)).pipe(Effect.map(Option.getOrThrow))

describe.skipIf(skipPostgres)("JobQueuePg", () => {
  layer(Env)((it) => {
    it.effect("enqueue adds a queued job; get and list show it; an unknown id is UnknownJob", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        const job = yield* queue.enqueue("https://example.com/a.bin", "/out/a.bin")
        assert.deepInclude(job, {
          id: 1,
          source: "https://example.com/a.bin",
          destination: "/out/a.bin",
          state: "queued",
          owner: null,
          epoch: 0,
          attempts: 0,
          leaseExpiresAt: null,
          lastError: null,
          offset: null
        })
        assert.deepStrictEqual(yield* queue.get(job.id), job)
        yield* queue.enqueue("https://example.com/b.bin", "/out/b.bin")
        assert.deepStrictEqual((yield* queue.list).map((j) => j.source), [
          "https://example.com/a.bin",
          "https://example.com/b.bin"
        ])
        const unknown = yield* queue.get(999).pipe(Effect.flip)
        assert.instanceOf(unknown, UnknownJob)
        assert.strictEqual(unknown.message, "no job with id 999")
      }))

    it.effect("claim takes the oldest due job, increments the epoch and leases it by the database's clock", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        const first = yield* queue.enqueue("s1", "/out/1")
        yield* queue.enqueue("s2", "/out/2")
        const before = yield* dbNow
        const claim = yield* claimOne("worker-a")
        const after = yield* dbNow
        assert.strictEqual(claim.job.id, first.id)
        assert.strictEqual(claim.epoch, 1)
        assert.strictEqual(claim.owner, "worker-a")
        assert.deepInclude(claim.job, { state: "running", owner: "worker-a", epoch: 1, attempts: 0 })
        assert.isAtLeast(claim.leaseExpiresAt, before + leaseMs - 1)
        assert.isAtMost(claim.leaseExpiresAt, after + leaseMs + 1)
        const second = yield* claimOne("worker-b")
        assert.strictEqual(second.job.id, first.id + 1)
        assert.isTrue(Option.isNone(yield* queue.claim("worker-c")), "nothing left to claim")
      }))

    it.effect("concurrent claimers never claim the same job twice", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        const count = 60
        yield* Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => queue.enqueue(`s${i}`, `/out/${i}`), {
          concurrency: 8
        })
        const claimed: Array<Claim> = []
        const claimer = (worker: string) =>
          queue.claim(worker).pipe(
            Effect.tap(
              Option.match({ onNone: () => Effect.void, onSome: (claim) => Effect.sync(() => claimed.push(claim)) })
            ),
            Effect.repeat({ while: Option.isSome })
          )
        // A claimer may find every remaining row locked by the others for a moment: sweep until empty.
        while (claimed.length < count) {
          yield* Effect.forEach(Array.from({ length: 8 }, (_, i) => `worker-${i}`), claimer, {
            concurrency: "unbounded"
          })
        }
        const ids = claimed.map((c) => c.job.id)
        assert.strictEqual(new Set(ids).size, count, "each job claimed once")
        assert.strictEqual(ids.length, count)
        assert.isTrue(claimed.every((c) => c.epoch === 1))
        const jobs = yield* queue.list
        assert.isTrue(jobs.every((j) => j.state === "running" && j.epoch === 1))
        assert.strictEqual(new Set(claimed.map((c) => c.owner)).size > 1, true, "the work was shared")
      }))

    it.effect("renew extends the lease; after a takeover every write of the old claim is LeaseLost", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        yield* queue.enqueue("s", "/out/s")
        const old = yield* claimOne("worker-a")
        yield* exec(`UPDATE jobs SET lease_expires_at = now() + interval '1 second' WHERE id = $1`, [old.job.id])
        const renewed = yield* queue.renew(old)
        assert.isAtLeast(renewed.leaseExpiresAt, (yield* dbNow) + leaseMs - 1000)
        assert.strictEqual(renewed.epoch, old.epoch)

        assert.isTrue(Option.isNone(yield* queue.claim("worker-b")), "a live lease is not taken over")
        yield* expire(renewed)
        const taken = yield* claimOne("worker-b")
        assert.strictEqual(taken.job.id, old.job.id)
        assert.strictEqual(taken.epoch, old.epoch + 1)
        assert.deepInclude(taken.job, { owner: "worker-b", attempts: 1, lastError: "lease of worker-a expired" })

        const lost = new LeaseLost({ jobId: old.job.id, epoch: old.epoch })
        for (
          const write of [
            queue.renew(old),
            queue.complete(old),
            queue.release(old),
            queue.fail(old, "boom", true)
          ] as const
        ) {
          const error = yield* Effect.flip(write as Effect.Effect<unknown, LeaseLost | QueueUnavailable>)
          assert.instanceOf(error, LeaseLost)
          assert.deepStrictEqual({ jobId: error.jobId, epoch: error.epoch }, { jobId: lost.jobId, epoch: lost.epoch })
          assert.strictEqual(error.message, `lease lost: job ${old.job.id} epoch ${old.epoch}`)
        }
        const job = yield* queue.get(old.job.id)
        assert.deepInclude(job, { state: "running", owner: "worker-b", epoch: 2, attempts: 1 })
        yield* queue.complete(taken)
        assert.strictEqual((yield* queue.get(old.job.id)).state, "done")
      }))

    it.effect("complete marks the job done once; a done job is never claimed again", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        yield* queue.enqueue("s", "/out/s")
        const claim = yield* claimOne("worker-a")
        yield* queue.complete(claim)
        assert.deepInclude(yield* queue.get(claim.job.id), { state: "done", owner: "worker-a", leaseExpiresAt: null })
        assert.instanceOf(yield* Effect.flip(queue.complete(claim)), LeaseLost)
        yield* exec(
          `UPDATE jobs SET lease_expires_at = now() - interval '1 hour', available_at = now() - interval '1 hour'`
        )
        assert.isTrue(Option.isNone(yield* queue.claim("worker-b")))
      }))

    it.effect("a retryable failure requeues with a doubling backoff and one more attempt, until attempts run out", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        yield* queue.enqueue("s", "/out/s")
        const first = yield* claimOne("worker-a")
        const before = yield* dbNow
        const requeued = yield* queue.fail(first, "gave up after 11 attempts", true)
        assert.deepInclude(requeued, {
          state: "queued",
          owner: null,
          attempts: 1,
          lastError: "gave up after 11 attempts",
          leaseExpiresAt: null,
          epoch: 1
        })
        assert.isAtLeast(requeued.availableAt, before + backoffMs - 1)
        assert.isAtMost(requeued.availableAt, (yield* dbNow) + backoffMs + 1)
        assert.isTrue(Option.isNone(yield* queue.claim("worker-b")), "not claimed while backing off")

        yield* due(first.job.id)
        const second = yield* claimOne("worker-b")
        assert.strictEqual(second.epoch, 2)
        const beforeSecond = yield* dbNow
        const again = yield* queue.fail(second, "503 again", true)
        assert.strictEqual(again.attempts, 2)
        assert.isAtLeast(again.availableAt, beforeSecond + 2 * backoffMs - 1, "the backoff doubled")
        assert.isAtMost(again.availableAt, (yield* dbNow) + 2 * backoffMs + 1)

        yield* due(first.job.id)
        const third = yield* claimOne("worker-c")
        const failed = yield* queue.fail(third, "503 for good", true)
        assert.deepInclude(failed, { state: "failed", attempts: 3, lastError: "503 for good", owner: "worker-c" })
        yield* due(first.job.id)
        assert.isTrue(Option.isNone(yield* queue.claim("worker-d")), "a failed job is not claimed")
      }))

    it.effect("an expired lease counts as an attempt; the last one marks the job failed instead of handing it on", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        yield* queue.enqueue("s", "/out/s")
        const first = yield* claimOne("worker-a")
        yield* expire(first)
        const second = yield* claimOne("worker-b")
        assert.deepInclude(second.job, { attempts: 1, epoch: 2 })
        yield* expire(second)
        const third = yield* claimOne("worker-c")
        assert.deepInclude(third.job, { attempts: 2, epoch: 3 })
        yield* expire(third)
        assert.isTrue(Option.isNone(yield* queue.claim("worker-d")), "the third expired lease was the last attempt")
        assert.deepInclude(yield* queue.get(first.job.id), {
          state: "failed",
          attempts: 3,
          epoch: 3,
          lastError: "lease of worker-c expired; gave up after 3 attempts"
        })
        assert.instanceOf(yield* Effect.flip(queue.complete(third)), LeaseLost)
      }))

    it.effect("a fatal failure marks the job failed with its error", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        yield* queue.enqueue("/missing", "/out/missing")
        const claim = yield* claimOne("worker-a")
        const failed = yield* queue.fail(claim, "no such file: /missing", false)
        assert.deepInclude(failed, {
          state: "failed",
          attempts: 1,
          lastError: "no such file: /missing",
          owner: "worker-a"
        })
        yield* exec(`UPDATE jobs SET available_at = now() - interval '1 hour'`)
        assert.isTrue(Option.isNone(yield* queue.claim("worker-b")))
      }))

    it.effect("release hands the job back at once without counting an attempt", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        yield* queue.enqueue("s", "/out/s")
        const claim = yield* claimOne("worker-a")
        yield* queue.release(claim)
        assert.deepInclude(yield* queue.get(claim.job.id), {
          state: "queued",
          owner: null,
          attempts: 0,
          leaseExpiresAt: null
        })
        const next = yield* claimOne("worker-b")
        assert.strictEqual(next.job.id, claim.job.id)
        assert.strictEqual(next.epoch, 2)
        assert.instanceOf(yield* Effect.flip(queue.release(claim)), LeaseLost)
      }))

    it.effect("list shows the bytes a job's checkpoint holds", () =>
      Effect.gen(function*() {
        yield* clear
        const queue = yield* JobQueue
        yield* queue.enqueue("https://example.com/x.bin", "/out/x.bin")
        const claim = yield* claimOne("worker-a")
        yield* queue.checkpoints(claim).save({
          key: { source: "https://example.com/x.bin", destination: "/out/x.bin" },
          offset: 5 * 2 ** 32,
          identity: { size: 6 * 2 ** 32 },
          chunkSize: 65536,
          updatedAt: 1
        })
        assert.strictEqual((yield* queue.list)[0]!.offset, 5 * 2 ** 32)
        assert.strictEqual((yield* queue.get(claim.job.id)).offset, 5 * 2 ** 32)
        // Over segments, the ranges written past the offset count too.
        yield* queue.checkpoints(claim).save({
          key: { source: "https://example.com/x.bin", destination: "/out/x.bin" },
          offset: 1000,
          identity: { size: 6 * 2 ** 32 },
          chunkSize: 65536,
          updatedAt: 2,
          ranges: [{ start: 4000, end: 9000 }, { start: 2 ** 32, end: 2 ** 33 }]
        })
        assert.strictEqual((yield* queue.get(claim.job.id)).offset, 1000 + 5000 + 2 ** 32)
      }))
  })

  describe("an unusable database", () => {
    it.effect("an unreachable server is QueueUnavailable with the reason", () =>
      Effect.gen(function*() {
        const port = yield* unusedPort
        const url = `postgres://someone:hunter2@127.0.0.1:${port}/jobs`
        const error = yield* Effect.scoped(Layer.build(JobQueuePg.layer(url))).pipe(Effect.flip)
        assert.instanceOf(error, QueueUnavailable)
        assert.strictEqual(error.database, `postgres://***@127.0.0.1:${port}/jobs`)
        assert.match(error.reason, /ECONNREFUSED/)
        assert.notInclude(error.message, "hunter2")
      }))

    it.effect("a wrong password is QueueUnavailable, password redacted", () =>
      Effect.gen(function*() {
        const error = yield* Effect.scoped(Layer.build(JobQueuePg.layer(wrongPasswordUrl(postgresUrl!)))).pipe(
          Effect.flip
        )
        assert.instanceOf(error, QueueUnavailable)
        assert.match(error.reason, /password authentication failed for user/)
        assert.match(error.database, /^postgres:\/\/\*\*\*@127\.0\.0\.1:/)
        assert.notInclude(error.message, "certainly-not-the-password")
      }))

    it.effect("a URL that is not a postgres:// URL is QueueUnavailable, password redacted", () =>
      Effect.gen(function*() {
        for (
          const [url, reason] of [
            ["not a url", "not a URL (expected postgres://user:password@host:port/database)"],
            ["http://u:pw@host/db", "unsupported scheme http: (expected postgres://user:password@host:port/database)"],
            ["postgres://u:s3cret@host:notaport/db", "not a URL (expected postgres://user:password@host:port/database)"]
          ] as const
        ) {
          const error = yield* Effect.scoped(Layer.build(JobQueuePg.layer(url))).pipe(Effect.flip)
          assert.instanceOf(error, QueueUnavailable)
          assert.strictEqual(error.reason, reason)
          assert.notInclude(error.message, "s3cret")
          assert.notInclude(error.message, ":pw@")
        }
      }))
  })
})
