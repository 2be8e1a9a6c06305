/**
 * The entry point: builds the commands, provides the stacks, runs on Node and exits with the
 * command's exit code.
 */
import { Command } from "@effect/cli"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Exit } from "effect"
import type { ConfigError } from "effect"
import type { CheckpointStoreError } from "../services/CheckpointStore.js"
import * as JobQueuePg from "../layers/JobQueuePg.js"
import { EnhancedStack, PlatformLive } from "../layers/Stacks.js"
import { ExitCode, readConfig, runRead } from "./cli.js"
import { demoConfig, runDemo } from "./demo.js"
import { enqueueConfig, jobsConfig, runEnqueue, runJobs, runWorker, workerConfig } from "./workers.js"

const setExitCode = (code: number) => Effect.sync(() => void (process.exitCode = code))

/** A stack that could not be built (an unusable checkpoint database, a bad flag value): one line, then `code`. */
const stackFailed = (code: number) => (error: CheckpointStoreError | ConfigError.ConfigError) =>
  Effect.as(
    Console.error(`streaming-reader: ${error._tag === "CheckpointStoreError" ? error.message : String(error)}`),
    code
  )

const read = Command.make("read", readConfig, (command) =>
  runRead(command).pipe(
    Effect.provide(EnhancedStack({ memoryLimit: command.memoryLimit, statePath: command.state })),
    Effect.catchAll(stackFailed(ExitCode.BadInput)),
    Effect.flatMap(setExitCode)
  )).pipe(Command.withDescription("copy one or more sources (file path or http(s) URL) to files, resumably"))

const demoWith = (size?: number) =>
  runDemo(size === undefined ? {} : { size }).pipe(
    Effect.provide(EnhancedStack()),
    Effect.catchAll(stackFailed(ExitCode.ReadFailed)),
    Effect.flatMap(setExitCode)
  )

const demo = Command.make("demo", demoConfig, ({ size }) => demoWith(size)).pipe(
  Command.withDescription("serve a generated object with faults, copy it, interrupt and resume, report (npm start)")
)

// Many workers: enqueue, worker, jobs (the job queue in PostgreSQL). A database that cannot be
// used (bad URL, unreachable, wrong password) and an unknown job id are bad input: exit 2 and
// one line, the password redacted.
const queueFailed = (error: { readonly message: string }) =>
  Effect.as(Console.error(`streaming-reader: ${error.message}`), ExitCode.BadInput)

const enqueue = Command.make("enqueue", enqueueConfig, (command) =>
  runEnqueue(command).pipe(
    Effect.provide(JobQueuePg.layer(command.postgres)),
    Effect.catchAll(queueFailed),
    Effect.flatMap(setExitCode)
  )).pipe(Command.withDescription("add read jobs (one per source) for the workers sharing a PostgreSQL queue"))

const worker = Command.make("worker", workerConfig, (command) =>
  runWorker(command).pipe(
    Effect.provide(EnhancedStack({ memoryLimit: command.memoryLimit })),
    Effect.provide(JobQueuePg.layer(command.postgres, { lease: command.lease })),
    Effect.catchAll(queueFailed),
    Effect.flatMap(setExitCode)
  )).pipe(Command.withDescription("claim and run read jobs from the queue until stopped (SIGTERM hands jobs back)"))

const jobs = Command.make("jobs", jobsConfig, (command) =>
  runJobs(command).pipe(
    Effect.provide(JobQueuePg.layer(command.postgres)),
    Effect.catchAll(queueFailed),
    Effect.flatMap(setExitCode)
  )).pipe(Command.withDescription("list the jobs: state, owner, epoch, offset, attempts, last error"))

const root = Command.make("streaming-reader", {}, () => demoWith()).pipe(
  Command.withDescription("read large files and HTTP(S) objects as streams: bounded memory, resumable copies"),
  Command.withSubcommands([read, demo, enqueue, worker, jobs])
)

const cli = Command.run(root, { name: "streaming-reader", version: "0.1.0" })

const program = cli(process.argv).pipe(
  Effect.catchAll((error) => setExitCode(error._tag === "HelpRequested" ? ExitCode.Done : ExitCode.BadInput)),
  Effect.catchAllDefect((defect) =>
    Effect.zipRight(
      Console.error(`streaming-reader: internal error: ${Cause.pretty(Cause.die(defect))}`),
      setExitCode(ExitCode.ReadFailed)
    )
  ),
  Effect.provide(PlatformLive)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (Exit.isFailure(exit)) onExit(Cause.isInterruptedOnly(exit.cause) ? 130 : ExitCode.ReadFailed)
    else onExit(Number(process.exitCode ?? 0))
  }
})
