/**
 * Many workers sharing read jobs through the `JobQueue`: `enqueue` adds jobs, `worker` claims and
 * copies them (one fenced reader per claim, the lease renewed on a schedule, every output write
 * guarded by the lease's local deadline), `jobs` lists them.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as StreamingReaderLive from "../layers/StreamingReaderLive.js"
import type { ReaderParts } from "../layers/Stacks.js"
import { redactUrlText } from "../services/ByteSource.js"
import { CheckpointStore } from "../services/CheckpointStore.js"
import type { Claim, Job } from "../services/JobQueue.js"
import { JobQueue, LeaseLost, leaseLostReason } from "../services/JobQueue.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { formatSize } from "../services/ReadOptions.js"
import { StreamingReader } from "../services/StreamingReader.js"
import { errorLine, ExitCode, exitCodeFor } from "../layers/CommandLine.js"
import { outputName } from "../layers/OutputNames.js"
import type { EnqueueCommand, JobsCommand, WorkerCommand } from "./options.js"
import { readOptionsOf } from "./options.js"
import type { CopyError } from "../layers/FileCopy.js"
import { copyToFile } from "../layers/FileCopy.js"

const isUrl = (source: string) => /^https?:\/\//i.test(source)

/** A source as printed: credentials in a URL redacted. */
const printable = (source: string) => isUrl(source) ? redactUrlText(source) : source

/** Runs `enqueue`: one job per source, its output in `--out-dir`; returns the exit code. */
export const runEnqueue = (command: EnqueueCommand) =>
  Effect.gen(function*() {
    const queue = yield* JobQueue
    const outDir = NodePath.resolve(command.outDir)
    const planned = command.sources.map((source) => ({
      // Workers may run elsewhere: a local path is stored absolute.
      source: isUrl(source) ? source : NodePath.resolve(source),
      destination: NodePath.join(outDir, outputName(source))
    }))
    const seen = new Map<string, string>()
    for (const { destination, source } of planned) {
      const other = seen.get(destination)
      if (other !== undefined) {
        yield* Console.error(
          `streaming-reader: ${printable(other)} and ${printable(source)} would both be written to ${destination}`
        )
        return ExitCode.BadInput
      }
      seen.set(destination, source)
    }
    for (const { destination, source } of planned) {
      const job = yield* queue.enqueue(source, destination)
      yield* Console.log(
        command.json
          ? JSON.stringify({ id: job.id, source: printable(job.source), destination: job.destination })
          : `job ${job.id}: ${printable(job.source)} -> ${job.destination}`
      )
    }
    return ExitCode.Done
  })

const column = (text: string, width: number) => text.length >= width ? text : text + " ".repeat(width - text.length)

/** The jobs as a table: id, state, owner, epoch, offset (from the checkpoint), attempts, source, last error. */
export const jobsTable = (jobs: ReadonlyArray<Job>): string => {
  const header = ["ID", "STATE", "OWNER", "EPOCH", "OFFSET", "ATTEMPTS", "SOURCE", "LAST ERROR"]
  const rows = jobs.map((job) => [
    String(job.id),
    job.state,
    job.owner ?? "-",
    String(job.epoch),
    job.offset === null ? "-" : formatSize(job.offset),
    String(job.attempts),
    printable(job.source),
    job.lastError ?? "-"
  ])
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)))
  return [header, ...rows]
    .map((row) => row.map((cell, i) => i === row.length - 1 ? cell : column(cell, widths[i]!)).join("  "))
    .join("\n")
}

const jobJson = (job: Job) => JSON.stringify({ ...job, source: printable(job.source) })

/** Runs `jobs`: every job (or the one asked for) as a table or JSON lines; returns the exit code. */
export const runJobs = (command: JobsCommand) =>
  Effect.gen(function*() {
    const queue = yield* JobQueue
    const jobs = yield* Option.match(command.id, {
      onNone: () => queue.list,
      onSome: (id) => Effect.map(queue.get(id), (job) => [job])
    })
    if (command.json) {
      for (const job of jobs) yield* Console.log(jobJson(job))
    } else {
      yield* Console.log(jobs.length === 0 ? "no jobs" : jobsTable(jobs))
    }
    return ExitCode.Done
  })

/** How close to the lease's end (by the local clock) a worker stops writing: a fifth of the lease, at most 5 s. */
export const safetyMargin = (leaseMs: number): number => Math.min(leaseMs / 5, 5_000)

const monotonicMs = Effect.map(Clock.currentTimeNanos, (nanos) => Number(nanos) / 1e6)

/** The retry classes of a failed copy: bad input and a changed source are final, the rest may pass on another try. */
const isRetryable = (error: CopyError): boolean =>
  exitCodeFor(error) !== ExitCode.BadInput && error._tag !== "SourceChanged" && error._tag !== "IntegrityMismatch"

/** One worker event (the worker started, or something happened to one of its jobs), printed as a line or as JSON (with `at`, the time it happened). */
interface WorkerEvent {
  readonly event: "started" | "claimed" | "done" | "failed" | "requeued" | "lease-lost" | "released"
  readonly worker: string
  readonly job?: number
  readonly epoch?: number
  readonly [key: string]: unknown
}

/** Runs `worker` until interrupted: claims jobs (up to `--concurrency` at once) and copies them. */
export const runWorker = (command: WorkerCommand) =>
  Effect.gen(function*() {
    const queue = yield* JobQueue
    const parts = yield* Effect.context<ReaderParts>()
    const worker = Option.getOrElse(command.name, () => `${NodeOs.hostname()}:${process.pid}`)
    const leaseMs = command.lease
    const marginMs = safetyMargin(leaseMs)
    const options: ReadOptionsInput = readOptionsOf(command)

    const report = (event: WorkerEvent, line: string) =>
      command.json
        ? Effect.flatMap(DateTime.now, (now) => Console.log(JSON.stringify({ ...event, at: DateTime.formatIso(now) })))
        : Console.log(line)

    /** Runs one claimed job; `claimSentAt` is when the claim was sent (local monotonic clock). */
    const runJob = (claim: Claim, claimSentAt: number) =>
      Effect.gen(function*() {
        const { epoch, job } = claim
        const base = { job: job.id, epoch, worker }
        /** After this (local monotonic clock) the lease may have run out: write nothing more. */
        let deadline = claimSentAt + leaseMs - marginMs
        const lost = yield* Deferred.make<never, LeaseLost>()
        const leaseLost = new LeaseLost({ jobId: job.id, epoch })
        /** What noticed the lost lease first: a refused write, the renewal, a refused checkpoint, or the completion. */
        let stoppedBy: "write" | "renewal" | "checkpoint" | "completion" | undefined
        const guard = Effect.flatMap(monotonicMs, (now) =>
          now > deadline
            ? Effect.zipRight(Effect.sync(() => (stoppedBy ??= "write")), Effect.fail(leaseLost))
            : Effect.void)

        const renewOnce = Effect.gen(function*() {
          const sentAt = yield* monotonicMs
          yield* queue.renew(claim)
          deadline = sentAt + leaseMs - marginMs
        }).pipe(
          Effect.catchTag("QueueUnavailable", (error) =>
            Effect.flatMap(monotonicMs, (now) =>
              now > deadline
                ? Effect.fail(leaseLost)
                : Console.error(`streaming-reader: worker ${worker}: renewing job ${job.id} failed: ${error.message}`)))
        )
        yield* Effect.delay(renewOnce, leaseMs / 3).pipe(
          Effect.repeat(Schedule.spaced(leaseMs / 3)),
          Effect.catchAll((error) =>
            Effect.zipRight(Effect.sync(() => (stoppedBy ??= "renewal")), Deferred.fail(lost, error))
          ),
          Effect.forkScoped
        )

        yield* report(
          { event: "claimed", ...base, source: printable(job.source), destination: job.destination },
          `job ${job.id} claimed by ${worker} (epoch ${epoch}): ${printable(job.source)} -> ${job.destination}`
        )
        // The output's directory on the shared volume; if it cannot be made, opening the output says why.
        yield* Effect.try(() => NodeFs.mkdirSync(NodePath.dirname(job.destination), { recursive: true })).pipe(
          Effect.ignore
        )
        const reader = yield* StreamingReaderLive.make.pipe(
          Effect.provideService(CheckpointStore, queue.checkpoints(claim)),
          Effect.provide(parts)
        )
        const copying = yield* copyToFile({
          source: job.source,
          out: job.destination,
          options,
          hash: false,
          durable: command.durable,
          lock: false,
          beforeWrite: guard
        }).pipe(Effect.provideService(StreamingReader, reader), Effect.fork)
        // A renewal that finds the lease lost stops the copy at once. Interruption (SIGTERM) waits
        // for the copy to wind down (its last checkpoint saved) before the job is handed back.
        yield* Deferred.await(lost).pipe(Effect.exit, Effect.zipRight(Fiber.interrupt(copying)), Effect.forkScoped)
        const exit = yield* Fiber.await(copying).pipe(Effect.onInterrupt(() => Fiber.interrupt(copying)))

        const onLeaseLost = (by: NonNullable<typeof stoppedBy>) =>
          Effect.suspend(() => {
            stoppedBy ??= by
            return report(
              { event: "lease-lost", ...base, by: stoppedBy },
              `job ${job.id}: ${leaseLost.message} (noticed by the ${stoppedBy}): ${worker} stopped it and ` +
                `writes nothing more to ${job.destination}`
            )
          })
        const recordFailure = (message: string, retryable: boolean) =>
          queue.fail(claim, message, retryable).pipe(
            Effect.flatMap((after) =>
              after.state === "queued"
                ? report(
                  { event: "requeued", ...base, attempts: after.attempts, error: message },
                  `job ${job.id} requeued after attempt ${after.attempts}: ${message}`
                )
                : report(
                  { event: "failed", ...base, attempts: after.attempts, error: message },
                  `job ${job.id} failed: ${message}`
                )
            ),
            Effect.catchTags({
              LeaseLost: () => onLeaseLost("completion"),
              QueueUnavailable: (failure) =>
                Console.error(
                  `streaming-reader: worker ${worker}: recording job ${job.id}'s failure failed: ${failure.message}`
                )
            })
          )

        if (Exit.isFailure(exit)) {
          const failure = Cause.failureOption(exit.cause)
          if (Option.isNone(failure)) {
            // Interrupted only by the watcher of a lost lease; anything else is a defect (a bug).
            return yield* Cause.isInterruptedOnly(exit.cause)
              ? onLeaseLost("renewal")
              : recordFailure(`internal error: ${Cause.pretty(exit.cause).split("\n")[0]}`, true)
          }
          const error = failure.value
          const lostHere = error._tag === "LeaseLost" ||
            (error._tag === "CheckpointStoreError" && error.reason === leaseLostReason(job.id, epoch))
          if (lostHere || Option.isSome(yield* Deferred.poll(lost))) {
            return yield* onLeaseLost(error._tag === "CheckpointStoreError" ? "checkpoint" : "renewal")
          }
          const copyError = error as CopyError
          return yield* recordFailure(errorLine(copyError), isRetryable(copyError))
        }
        const summary = exit.value
        return yield* queue.complete(claim).pipe(
          Effect.retry({
            while: (error) => error._tag === "QueueUnavailable",
            schedule: Schedule.spaced(1000),
            times: 3
          }),
          Effect.zipRight(report(
            {
              event: "done",
              ...base,
              bytes: summary.bytes,
              resumedFrom: summary.resumedFrom,
              segments: summary.segments
            },
            `job ${job.id} done by ${worker}: ${summary.bytes} bytes to ${job.destination}` +
              (summary.resumedFrom > 0 ? ` (resumed from ${summary.resumedFrom})` : "") +
              (summary.segments > 1 ? ` over ${summary.segments} connections` : "")
          )),
          Effect.catchTags({
            LeaseLost: () => onLeaseLost("completion"),
            QueueUnavailable: (error) =>
              Console.error(`streaming-reader: worker ${worker}: completing job ${job.id} failed: ${error.message}`)
          })
        )
      }).pipe(
        Effect.scoped,
        Effect.onInterrupt(() =>
          queue.release(claim).pipe(
            Effect.zipRight(report(
              { event: "released", job: claim.job.id, epoch: claim.epoch, worker },
              `job ${claim.job.id} handed back by ${worker}`
            )),
            Effect.ignore
          )
        )
      )

    const pollMs = command.pollInterval
    const slot = Effect.gen(function*() {
      const sentAt = yield* monotonicMs
      const claimed = yield* queue.claim(worker).pipe(
        Effect.catchTag("QueueUnavailable", (error) =>
          Effect.as(Console.error(`streaming-reader: worker ${worker}: ${error.message}`), Option.none<Claim>()))
      )
      if (Option.isSome(claimed)) {
        return yield* runJob(claimed.value, sentAt)
      }
      // Idle: wait, with jitter so idle workers do not poll in step.
      yield* Effect.sleep(pollMs * (0.5 + (yield* Random.next) / 2))
    }).pipe(Effect.forever)

    const concurrency = Math.max(1, command.concurrency)
    yield* report(
      { event: "started", worker, concurrency, leaseMs },
      `worker ${worker} started: ${concurrency} jobs at a time, lease ${leaseMs} ms`
    )
    yield* Effect.all(
      Array.from({ length: concurrency }, () =>
        slot),
      {
        concurrency: "unbounded",
        discard: true
      }
    )
    return ExitCode.Done
  })
