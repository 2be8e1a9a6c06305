/**
 * Workers of the built command line sharing a PostgreSQL job queue: start them as a user
 * would, read the job events they print, and poll until a job or a worker reaches a state.
 */
import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as JobQueuePg from "../../src/layers/JobQueuePg.js"
import { JobQueue } from "../../src/services/JobQueue.js"
import type { JobQueueShape } from "../../src/services/JobQueue.js"
import { cliEntry } from "./cli.js"
import { freshDatabase } from "./postgres.js"

/** One job event a worker printed with `--json`. */
export interface WorkerEvent {
  /** When the worker printed it (an ISO time). */
  readonly at: string
  /** When the test received the line (Date.now()). */
  readonly receivedAt: number
  readonly event: string
  readonly job: number
  readonly epoch: number
  readonly worker: string
  readonly [key: string]: unknown
}

/** A worker process started by a test. */
export interface WorkerProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly events: () => ReadonlyArray<WorkerEvent>
  readonly stderr: () => string
  /** Sends `signal` to the worker's process group. */
  readonly signal: (signal: NodeJS.Signals) => void
  /** Resolves with the exit code (or signal) once the process has exited. */
  readonly exited: Promise<number | NodeJS.Signals | null>
}

/**
 * Starts `streaming-reader worker` in its own process group, printing JSON events; the process
 * group is killed when the scope closes.
 */
export const startWorker = (
  url: string,
  name: string,
  extra: ReadonlyArray<string> = []
): Effect.Effect<WorkerProcess, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(
        process.execPath,
        [cliEntry, "worker", "--postgres", url, "--name", name, "--json", "--poll-interval", "100ms", ...extra],
        { detached: true, stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      let stderr = ""
      const received: Array<WorkerEvent> = []
      child.stdout!.on("data", (chunk: Buffer) => {
        stdout += chunk.toString()
        const lines = stdout.split("\n")
        stdout = lines.pop()!
        for (const line of lines) {
          if (!line.startsWith("{")) continue
          try {
            received.push({ ...JSON.parse(line), receivedAt: Date.now() })
          } catch {
            // not an event (a log line)
          }
        }
      })
      child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
      const exited = new Promise<number | NodeJS.Signals | null>((resolve) =>
        child.on("exit", (code, signal) => resolve(code ?? signal))
      )
      const worker: WorkerProcess = {
        name,
        child,
        events: () => received,
        stderr: () => stderr,
        signal: (signal) => {
          try {
            process.kill(-child.pid!, signal)
          } catch {
            // already gone
          }
        },
        exited
      }
      return worker
    }),
    (worker) =>
      Effect.promise(async () => {
        worker.signal("SIGCONT")
        worker.signal("SIGKILL")
        await worker.exited
      })
  )

/** Polls `check` every `everyMs` until it gives a value; a defect after `timeoutMs`. */
export const waitFor = <A, E>(
  what: string,
  check: Effect.Effect<A | undefined, E> | (() => A | undefined),
  timeoutMs = 20_000,
  everyMs = 20
): Effect.Effect<A, E> => {
  const poll = Effect.isEffect(check) ? check : Effect.sync(check)
  const loop: Effect.Effect<A, E> = Effect.flatMap(
    poll,
    (value) => value !== undefined ? Effect.succeed(value) : Effect.zipRight(Effect.sleep(everyMs), loop)
  )
  return Effect.timeoutFail(loop, {
    duration: timeoutMs,
    onTimeout: () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
  }).pipe(Effect.catchIf((error): error is Error => error instanceof Error, Effect.die))
}

/** The queue on a fresh database, for the test to enqueue jobs and read their rows. */
export class Queue
  extends Context.Tag("test/Queue")<Queue, { readonly url: string; readonly queue: JobQueueShape }>()
{}

/** A fresh database with its job queue, dropped with the scope. */
export const QueueLive = Layer.scoped(
  Queue,
  Effect.gen(function*() {
    const url = yield* freshDatabase
    const context = yield* Layer.build(JobQueuePg.layer(url))
    return { url, queue: Context.get(context, JobQueue) }
  })
)

/** Runs `f` with the queue of a fresh database. */
export const withQueue = <A, E>(f: (env: Context.Tag.Service<Queue>) => Effect.Effect<A, E, Scope.Scope>) =>
  Effect.flatMap(Queue, f).pipe(Effect.provide(QueueLive))
