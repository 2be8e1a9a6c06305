/**
 * JobQueuePg: the `JobQueue` in PostgreSQL. Claims use `FOR UPDATE SKIP LOCKED`, leases are
 * timed by the database's clock, and every write for a claim is one statement guarded by
 * `WHERE id = <job> AND epoch = <claim's epoch>`: zero rows changed is `LeaseLost`.
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as ConfigError from "effect/ConfigError"
import type * as Scope from "effect/Scope"
import { Job, JobQueue, LeaseLost, QueueUnavailable, UnknownJob } from "../services/JobQueue.js"
import type { Claim, JobQueueShape } from "../services/JobQueue.js"
import { redactUrlText } from "../services/ByteSource.js"
import { connect, fencedWith, reasonOf, urlConfig } from "./CheckpointStorePg.js"

/** How the queue leases and retries. */
export interface JobQueueOptions {
  /** How long a claim (or a renewal) holds a job (default 30 s). */
  readonly lease?: Duration.DurationInput
  /** Attempts (retryable failures and expired leases) after which a retryable failure marks the job failed (default 5). */
  readonly maxAttempts?: number
  /** The backoff after the first retryable failure; it doubles with each further attempt (default 1 s). */
  readonly retryBackoff?: Duration.DurationInput
  /** The longest backoff (default 60 s). */
  readonly maxRetryBackoff?: Duration.DurationInput
}

/** The lease when none is given. */
export const defaultLease = Duration.seconds(30)

/**
 * The columns of a job as `Job` decodes them, from a relation `j`, with the bytes its latest
 * checkpoint holds: its offset, and the ranges past it of a read over segments.
 */
const jobSelect = `SELECT j.id::float8 AS id, j.source, j.destination, j.state, j.owner, j.epoch::float8 AS epoch,
    j.attempts, round(extract(epoch FROM j.lease_expires_at) * 1000)::float8 AS "leaseExpiresAt",
    round(extract(epoch FROM j.available_at) * 1000)::float8 AS "availableAt", j.last_error AS "lastError",
    c.byte_offset::float8 AS "offset",
    round(extract(epoch FROM j.created_at) * 1000)::float8 AS "createdAt",
    round(extract(epoch FROM j.updated_at) * 1000)::float8 AS "updatedAt"
  FROM j LEFT JOIN LATERAL (
    SELECT byte_offset + coalesce((
      SELECT sum((r ->> 'end')::bigint - (r ->> 'start')::bigint) FROM jsonb_array_elements(done_ranges::jsonb) r
    ), 0) AS byte_offset
    FROM checkpoints WHERE checkpoints.destination = j.destination
    ORDER BY updated_at DESC LIMIT 1
  ) c ON true`

/** A statement that changes jobs (`RETURNING jobs.*`), followed by the selection of the rows it changed. */
const changedJobs = (statement: string) => `WITH j AS (${statement}) ${jobSelect} ORDER BY j.id`

/**
 * $1 worker, $2 lease (ms), $3 max attempts. An expired lease counts as a failed attempt: the
 * job is taken over, or marked failed when that was its last attempt (a job that keeps killing
 * its workers does not circulate for ever).
 */
const claimSql = `WITH given_up AS (
    UPDATE jobs SET
      state = 'failed',
      attempts = attempts + 1,
      last_error = 'lease of ' || owner || ' expired; gave up after ' || (attempts + 1) || ' attempts',
      lease_expires_at = NULL,
      updated_at = now()
    WHERE state = 'running' AND lease_expires_at <= now() AND attempts + 1 >= $3::int
    RETURNING id
  ), j AS (
    UPDATE jobs SET
      state = 'running',
      owner = $1,
      epoch = jobs.epoch + 1,
      attempts = jobs.attempts + CASE WHEN jobs.state = 'running' THEN 1 ELSE 0 END,
      last_error = CASE WHEN jobs.state = 'running' THEN 'lease of ' || jobs.owner || ' expired' ELSE jobs.last_error END,
      lease_expires_at = now() + $2::float8 * interval '1 millisecond',
      updated_at = now()
    FROM (
      SELECT id FROM jobs
      WHERE (state = 'queued' AND available_at <= now())
        OR (state = 'running' AND lease_expires_at <= now() AND attempts + 1 < $3::int)
      ORDER BY id
      LIMIT 1
      FOR UPDATE SKIP LOCKED
    ) next
    WHERE jobs.id = next.id
    RETURNING jobs.*
  ) ${jobSelect}`

const fenceSql = `WHERE id = $1 AND epoch = $2 AND state = 'running' RETURNING *`

const renewSql = changedJobs(`UPDATE jobs SET
    lease_expires_at = now() + $3::float8 * interval '1 millisecond', updated_at = now()
  ${fenceSql}`)

const completeSql = `UPDATE jobs SET state = 'done', lease_expires_at = NULL, updated_at = now() ${fenceSql}`

const releaseSql = `UPDATE jobs SET state = 'queued', owner = NULL, lease_expires_at = NULL, available_at = now(),
    updated_at = now() ${fenceSql}`

/** $3 error, $4 retryable, $5 max attempts, $6 first backoff (ms), $7 longest backoff (ms). */
const failSql = changedJobs(`UPDATE jobs SET
    attempts = attempts + 1,
    last_error = $3,
    state = CASE WHEN $4::boolean AND attempts + 1 < $5::int THEN 'queued' ELSE 'failed' END,
    owner = CASE WHEN $4::boolean AND attempts + 1 < $5::int THEN NULL ELSE owner END,
    available_at = CASE WHEN $4::boolean AND attempts + 1 < $5::int
      THEN now() + least($6::float8 * power(2, attempts), $7::float8) * interval '1 millisecond'
      ELSE available_at END,
    lease_expires_at = NULL,
    updated_at = now()
  ${fenceSql}`)

const enqueueSql = changedJobs(`INSERT INTO jobs (source, destination) VALUES ($1, $2) RETURNING *`)

const decodeJobs = Schema.decodeUnknown(Schema.Array(Job))

/** Builds the queue on a connected, migrated client; `database` names it in errors (password redacted). */
export const makeWith = (sql: PgClient.PgClient, database: string, options: JobQueueOptions = {}): JobQueueShape => {
  const leaseMs = Duration.toMillis(Duration.decode(options.lease ?? defaultLease))
  const maxAttempts = options.maxAttempts ?? 5
  const backoffMs = Duration.toMillis(Duration.decode(options.retryBackoff ?? Duration.seconds(1)))
  const maxBackoffMs = Duration.toMillis(Duration.decode(options.maxRetryBackoff ?? Duration.seconds(60)))

  const unavailable = (error: unknown) => new QueueUnavailable({ database, reason: reasonOf(error) })

  const jobs = (statement: string, params: ReadonlyArray<unknown>) =>
    sql.unsafe(statement, params).pipe(
      Effect.flatMap(decodeJobs),
      Effect.mapError(unavailable)
    )

  /** Runs a fenced statement for `claim`; no row changed is `LeaseLost`. */
  const fencedJobs = (claim: Claim, statement: string, params: ReadonlyArray<unknown> = []) =>
    jobs(statement, [claim.job.id, claim.epoch, ...params]).pipe(
      Effect.filterOrFail(
        (rows) => rows.length > 0,
        () => new LeaseLost({ jobId: claim.job.id, epoch: claim.epoch })
      ),
      Effect.map((rows) => rows[0]!)
    )

  const fencedUpdate = (claim: Claim, statement: string) =>
    sql.unsafe(statement, [claim.job.id, claim.epoch]).pipe(
      Effect.mapError(unavailable),
      Effect.filterOrFail(
        (rows) => rows.length > 0,
        () => new LeaseLost({ jobId: claim.job.id, epoch: claim.epoch })
      ),
      Effect.asVoid
    )

  return JobQueue.of({
    enqueue: Effect.fn("JobQueue.enqueue")(function*(source: string, destination: string) {
      const rows = yield* jobs(enqueueSql, [source, destination])
      return rows[0]!
    }),
    claim: Effect.fn("JobQueue.claim")(function*(worker: string) {
      const rows = yield* jobs(claimSql, [worker, leaseMs, maxAttempts])
      return Option.map(Option.fromNullable(rows[0]), (job): Claim => ({
        job,
        owner: worker,
        epoch: job.epoch,
        leaseExpiresAt: job.leaseExpiresAt ?? 0
      }))
    }),
    renew: Effect.fn("JobQueue.renew")(function*(claim: Claim) {
      const job = yield* fencedJobs(claim, renewSql, [leaseMs])
      return { ...claim, job, leaseExpiresAt: job.leaseExpiresAt ?? 0 }
    }),
    complete: Effect.fn("JobQueue.complete")(function*(claim: Claim) {
      yield* fencedUpdate(claim, completeSql)
    }),
    fail: Effect.fn("JobQueue.fail")(function*(claim: Claim, error: string, retryable: boolean) {
      return yield* fencedJobs(claim, failSql, [error, retryable, maxAttempts, backoffMs, maxBackoffMs])
    }),
    release: Effect.fn("JobQueue.release")(function*(claim: Claim) {
      yield* fencedUpdate(claim, releaseSql)
    }),
    list: jobs(`WITH j AS (SELECT * FROM jobs) ${jobSelect} ORDER BY j.id`, []).pipe(
      Effect.withSpan("JobQueue.list")
    ),
    get: Effect.fn("JobQueue.get")(function*(id: number) {
      const rows = yield* jobs(`WITH j AS (SELECT * FROM jobs WHERE id = $1) ${jobSelect}`, [id])
      if (rows.length === 0) return yield* new UnknownJob({ jobId: id })
      return rows[0]!
    }),
    checkpoints: (claim) => fencedWith(sql, claim)
  })
}

/** The queue in the PostgreSQL database at `url`: connects, creates or updates the schema. */
export const make = (
  url: Redacted.Redacted | string,
  options: JobQueueOptions = {}
): Effect.Effect<JobQueueShape, QueueUnavailable, Scope.Scope> =>
  connect(url).pipe(
    Effect.map((client) =>
      makeWith(client, redactUrlText(typeof url === "string" ? url : Redacted.value(url)), options)
    ),
    Effect.mapError((error) => new QueueUnavailable({ database: error.database, reason: error.reason }))
  )

/** The PostgreSQL job queue at `url`; building it fails with `QueueUnavailable` (one clear reason, no password). */
export const layer = (
  url: Redacted.Redacted | string,
  options: JobQueueOptions = {}
): Layer.Layer<JobQueue, QueueUnavailable> => Layer.scoped(JobQueue, make(url, options))

/** The PostgreSQL job queue at the URL in `STREAMING_READER_POSTGRES_URL`. */
export const layerConfig = (
  options: JobQueueOptions = {}
): Layer.Layer<JobQueue, QueueUnavailable | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(urlConfig, (url) => layer(url, options)))
