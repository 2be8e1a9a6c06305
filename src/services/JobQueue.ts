/**
 * JobQueue: read jobs shared by many worker processes. A worker claims a job for a lease that
 * it renews; every claim increments the job's `epoch` (a fencing token), and every write that
 * belongs to a claim takes effect only while the job still carries that epoch.
 */
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type { CheckpointStoreShape } from "./CheckpointStore.js"

/** Where a job stands: waiting (or backing off), held by a worker, finished, or given up. */
export const JobState = Schema.Literal("queued", "running", "done", "failed")

/** Where a job stands. */
export type JobState = typeof JobState.Type

/** One read job: copy `source` into `destination`. Times are milliseconds since the epoch, by the database's clock. */
export const Job = Schema.Struct({
  id: Schema.Number,
  source: Schema.String,
  destination: Schema.String,
  state: JobState,
  /** The worker that holds (or last held) the job. */
  owner: Schema.NullOr(Schema.String),
  /** The fencing token: how many times the job was claimed. */
  epoch: Schema.Number,
  /** Claims that ended without the job completing (retryable failures, expired leases taken over). */
  attempts: Schema.Number,
  /** When the current lease ends; `null` unless running. */
  leaseExpiresAt: Schema.NullOr(Schema.Number),
  /** The job is not claimed before this time (retry backoff). */
  availableAt: Schema.Number,
  /** The error of the last failed attempt. */
  lastError: Schema.NullOr(Schema.String),
  /** Bytes vouched for by the job's checkpoint; `null` when there is none. */
  offset: Schema.NullOr(Schema.Number),
  createdAt: Schema.Number,
  updatedAt: Schema.Number
})

/** One read job. */
export type Job = typeof Job.Type

/** A job held by a worker: the epoch every write for it must match, and when the lease ends (database clock). */
export interface Claim {
  readonly job: Job
  readonly owner: string
  readonly epoch: number
  readonly leaseExpiresAt: number
}

/** The reason a fenced checkpoint write gives when the claim's epoch is no longer the job's. */
export const leaseLostReason = (jobId: number, epoch: number): string => `lease lost: job ${jobId} epoch ${epoch}`

/** A write for a claim changed nothing: the job was taken over (a newer epoch), handed back or finished. */
export class LeaseLost extends Schema.TaggedError<LeaseLost>()("LeaseLost", {
  jobId: Schema.Number,
  epoch: Schema.Number
}) {
  override get message() {
    return leaseLostReason(this.jobId, this.epoch)
  }
}

/** No job has this id. */
export class UnknownJob extends Schema.TaggedError<UnknownJob>()("UnknownJob", {
  jobId: Schema.Number
}) {
  override get message() {
    return `no job with id ${this.jobId}`
  }
}

/** The job database cannot be used: bad URL, unreachable, refused credentials, failed statement. */
export class QueueUnavailable extends Schema.TaggedError<QueueUnavailable>()("QueueUnavailable", {
  /** The database URL with its password redacted. */
  database: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `job database ${this.database}: ${this.reason}`
  }
}

/** Read jobs shared by many workers through leases fenced by an epoch. */
export interface JobQueueShape {
  /** Adds a job, queued and available now. */
  readonly enqueue: (source: string, destination: string) => Effect.Effect<Job, QueueUnavailable>
  /**
   * Claims the oldest available job (queued and due, or running with an expired lease) for
   * `worker`, skipping jobs other claimers hold locked: increments its epoch and starts a lease.
   */
  readonly claim: (worker: string) => Effect.Effect<Option.Option<Claim>, QueueUnavailable>
  /** Extends the lease from now (database clock); `LeaseLost` when the epoch moved on. */
  readonly renew: (claim: Claim) => Effect.Effect<Claim, LeaseLost | QueueUnavailable>
  /** Marks the job done. */
  readonly complete: (claim: Claim) => Effect.Effect<void, LeaseLost | QueueUnavailable>
  /**
   * Records a failed attempt: a fatal one marks the job failed with `error`; a retryable one puts
   * it back in the queue after a backoff with one more attempt (failed once attempts run out).
   */
  readonly fail: (claim: Claim, error: string, retryable: boolean) => Effect.Effect<Job, LeaseLost | QueueUnavailable>
  /** Hands the job back, queued and available now, without counting an attempt (a clean shutdown). */
  readonly release: (claim: Claim) => Effect.Effect<void, LeaseLost | QueueUnavailable>
  /** Every job, oldest first. */
  readonly list: Effect.Effect<ReadonlyArray<Job>, QueueUnavailable>
  /** One job. */
  readonly get: (id: number) => Effect.Effect<Job, UnknownJob | QueueUnavailable>
  /**
   * The checkpoint store of one claim: loads as usual; saves and deletes take effect only while
   * the job carries the claim's epoch, else fail with `CheckpointStoreError` whose reason is
   * `leaseLostReason(job, epoch)`.
   */
  readonly checkpoints: (claim: Claim) => CheckpointStoreShape
}

/** Read jobs shared by many workers. */
export class JobQueue extends Context.Tag("streaming-reader/JobQueue")<JobQueue, JobQueueShape>() {}
