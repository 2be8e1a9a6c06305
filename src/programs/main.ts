/**
 * The entry point: builds the commands, provides the stacks, runs on Node and exits with the
 * command's exit code, or 128 + the signal's number when SIGINT, SIGTERM or SIGHUP stopped it.
 * Parsing a command and printing help load only the commands' options: what a command runs
 * (the reader, the demo, the PostgreSQL job queue, the HTTP client) is imported when it runs.
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Inspectable from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import type * as ConfigError from "effect/ConfigError"
import type * as Redacted from "effect/Redacted"
import * as NodeOs from "node:os"
import type { CheckpointStoreError } from "../services/CheckpointStore.js"
import type { JobQueueOptions } from "../layers/JobQueuePg.js"
import type { EnhancedStackOptions } from "../layers/Stacks.js"
import { errorLine, ExitCode } from "../layers/CommandLine.js"
import { demoConfig, enqueueConfig, jobsConfig, readConfig, workerConfig } from "./options.js"

const setExitCode = (code: number) => Effect.sync(() => void (process.exitCode = code))

/** A stack that could not be built (an unusable checkpoint database, a bad flag value): one line, then `code`. */
const stackFailed = (code: number) => (error: CheckpointStoreError | ConfigError.ConfigError) =>
  Effect.as(
    Console.error(`streaming-reader: ${error._tag === "CheckpointStoreError" ? error.message : String(error)}`),
    code
  )

/** Bad usage found before anything is opened: one line, exit 2. */
const badUsage = (line: string) => Effect.as(Console.error(`streaming-reader: ${oneLine(line)}`), ExitCode.BadInput)

/** The enhanced stack over Node's HTTP client (undici), imported when a command that reads runs. */
const readerStack = (options?: EnhancedStackOptions) =>
  Layer.unwrapEffect(
    Effect.promise(() => Promise.all([import("../layers/Stacks.js"), import("@effect/platform-node/NodeHttpClient")]))
      .pipe(
        Effect.map(([Stacks, NodeHttpClient]) =>
          Stacks.EnhancedStack(options).pipe(Layer.provide(NodeHttpClient.layerUndici))
        )
      )
  )

/** The PostgreSQL job queue at `url`, imported when a command that uses it runs. */
const jobQueue = (url: Redacted.Redacted, options?: JobQueueOptions) =>
  Layer.unwrapEffect(
    Effect.map(Effect.promise(() => import("../layers/JobQueuePg.js")), (JobQueuePg) => JobQueuePg.layer(url, options))
  )

const read = Command.make("read", readConfig, (command) =>
  Effect.promise(() => import("./cli.js")).pipe(
    Effect.flatMap(({ planRead, runRead }) =>
      planRead(command).pipe(
        Effect.matchEffect({
          onFailure: badUsage,
          onSuccess: (targets) =>
            runRead(command, targets).pipe(
              Effect.provide(readerStack({ memoryLimit: command.memoryLimit, statePath: command.state })),
              Effect.catchAll(stackFailed(ExitCode.BadInput))
            )
        })
      )
    ),
    Effect.flatMap(setExitCode),
    Effect.withConsole(standardConsole)
  )).pipe(Command.withDescription("copy one or more sources (file path or http(s) URL) to files, resumably"))

const demoWith = (size?: number) =>
  Effect.promise(() => import("./demo.js")).pipe(
    Effect.flatMap(({ runDemo }) =>
      runDemo(size === undefined ? {} : { size }).pipe(
        Effect.provide(readerStack()),
        Effect.catchAll(stackFailed(ExitCode.ReadFailed))
      )
    ),
    Effect.flatMap(setExitCode),
    Effect.withConsole(standardConsole)
  )

const demo = Command.make("demo", demoConfig, ({ size }) => demoWith(size)).pipe(
  Command.withDescription("serve a generated object with faults, copy it, interrupt and resume, report (npm start)")
)

// Many workers: enqueue, worker, jobs (the job queue in PostgreSQL). A database that cannot be
// used (bad URL, unreachable, wrong password) and an unknown job id are bad input: exit 2 and
// one line, the password redacted.
const queueFailed = (error: { readonly message: string }) =>
  Effect.as(Console.error(`streaming-reader: ${error.message}`), ExitCode.BadInput)

/** The module of the queue commands, imported when one of them runs. */
const workers = Effect.promise(() => import("./workers.js"))

const enqueue = Command.make("enqueue", enqueueConfig, (command) =>
  workers.pipe(
    Effect.flatMap(({ runEnqueue }) => runEnqueue(command)),
    Effect.provide(jobQueue(command.postgres)),
    Effect.catchAll(queueFailed),
    Effect.flatMap(setExitCode),
    Effect.withConsole(standardConsole)
  )).pipe(Command.withDescription("add read jobs (one per source) for the workers sharing a PostgreSQL queue"))

const worker = Command.make("worker", workerConfig, (command) =>
  Effect.promise(() => import("./cli.js")).pipe(
    Effect.flatMap(({ checkReadFlags }) => checkReadFlags(command)),
    Effect.matchEffect({
      onFailure: (error) => badUsage(errorLine(error)),
      onSuccess: () =>
        workers.pipe(
          Effect.flatMap(({ runWorker }) => runWorker(command)),
          Effect.provide(readerStack({ memoryLimit: command.memoryLimit })),
          Effect.provide(jobQueue(command.postgres, { lease: command.lease })),
          Effect.catchAll(queueFailed)
        )
    }),
    Effect.flatMap(setExitCode),
    Effect.withConsole(standardConsole)
  )).pipe(Command.withDescription("claim and run read jobs from the queue until stopped (SIGTERM hands jobs back)"))

const jobs = Command.make("jobs", jobsConfig, (command) =>
  workers.pipe(
    Effect.flatMap(({ runJobs }) => runJobs(command)),
    Effect.provide(jobQueue(command.postgres)),
    Effect.catchAll(queueFailed),
    Effect.flatMap(setExitCode),
    Effect.withConsole(standardConsole)
  )).pipe(Command.withDescription("list the jobs: state, owner, epoch, offset, attempts, last error"))

const root = Command.make("streaming-reader", {}, () => demoWith()).pipe(
  Command.withDescription("read large files and HTTP(S) objects as streams: bounded memory, resumable copies"),
  Command.withSubcommands([read, demo, enqueue, worker, jobs])
)

const cli = Command.run(root, { name: "streaming-reader", version: "0.1.0" })

/** The console the commands print with. */
const standardConsole = Effect.runSync(Effect.console)

/**
 * The console of the parser: `Command.run` prints each parse error itself, on stderr and over
 * several lines; it prints nothing here, and `program` prints the error as one line instead.
 */
const parserConsole = {
  ...standardConsole,
  error: () => Effect.void,
  unsafe: { ...standardConsole.unsafe, error: () => {} }
}

/** Text on one line: ANSI styles removed, line breaks and runs of blanks turned into one space. */
const oneLine = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "").replace(/[\u0000-\u001f\u007f\s]+/g, " ").trim()

/** Log lines on stderr, one line each: `streaming-reader: warning: <message>`. */
const stderrLogger = Logger.withConsoleError(
  Logger.make(({ cause, logLevel, message }) => {
    const parts = (Array.isArray(message) ? message : [message]).map((part) =>
      typeof part === "string" ? part : Inspectable.toStringUnknown(part)
    )
    if (!Cause.isEmpty(cause)) parts.push(Cause.pretty(cause).split("\n")[0]!)
    const level = logLevel._tag === "Warning" ? "warning" : logLevel.label.toLowerCase()
    return `streaming-reader: ${level}: ${oneLine(parts.join(" "))}`
  })
)

/** The levels @effect/cli's built-in `--log-level` takes. */
const logLevels: ReadonlyArray<string> = ["all", "trace", "debug", "info", "warning", "error", "fatal", "none"]

/**
 * A `--log-level` value the built-in option does not know, as one line naming it: the parser
 * would otherwise report the flag itself as unknown.
 */
const badLogLevel = (args: ReadonlyArray<string>): string | undefined => {
  for (const [index, arg] of args.entries()) {
    const value = arg === "--log-level" ? args[index + 1] : arg.startsWith("--log-level=") ? arg.slice(12) : undefined
    if (value !== undefined && !logLevels.includes(value)) {
      return `--log-level: not a level: ${value} (one of ${logLevels.join(", ")})`
    }
  }
  return undefined
}

// `--log-level <level>` is @effect/cli's built-in option: `Command.run` sets that level inside this default.
const parsed = Effect.suspend(() => {
  const logLevelError = badLogLevel(process.argv.slice(2))
  return logLevelError === undefined
    ? cli(process.argv)
    : badUsage(logLevelError).pipe(Effect.flatMap(setExitCode), Effect.withConsole(standardConsole))
})
const program = parsed.pipe(
  Effect.withConsole(parserConsole),
  Logger.withMinimumLogLevel(LogLevel.Warning),
  Effect.catchAll((error) =>
    ValidationError.isHelpRequested(error)
      ? setExitCode(ExitCode.Done)
      : Effect.zipRight(badUsage(HelpDoc.toAnsiText(error.error)), setExitCode(ExitCode.BadInput))
  ),
  Effect.catchAllDefect((defect) =>
    Effect.zipRight(
      Console.error(`streaming-reader: internal error: ${oneLine(Cause.pretty(Cause.die(defect)).split("\n")[0]!)}`),
      setExitCode(ExitCode.ReadFailed)
    )
  ),
  Effect.provide(NodeContext.layer),
  Effect.provide(Logger.replace(Logger.defaultLogger, stderrLogger))
)

/** The signals that stop the program; each interrupts it, so that its finalizers save the checkpoints. */
const stopSignals: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM", "SIGHUP"]

/** The exit code after `signal`: 128 + its number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). */
const signalExitCode = (signal: NodeJS.Signals) => 128 + NodeOs.constants.signals[signal]

/**
 * Runs `program` to its end and exits. A stop signal interrupts it and the exit code is the
 * signal's; a second signal while it shuts down exits at once with that code.
 */
const runMain = (main: Effect.Effect<void>) => {
  const fiber = Effect.runFork(main)
  let stoppedBy: NodeJS.Signals | undefined
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppedBy !== undefined) process.exit(signalExitCode(stoppedBy))
    stoppedBy = signal
    fiber.unsafeInterruptAsFork(fiber.id())
  }
  for (const signal of stopSignals) process.on(signal, onSignal)
  const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
  fiber.addObserver((exit) => {
    clearInterval(keepAlive)
    if (Exit.isSuccess(exit)) process.exit(Number(process.exitCode ?? ExitCode.Done))
    if (stoppedBy !== undefined && Cause.isInterrupted(exit.cause)) {
      process.stderr.write(`streaming-reader: stopped by ${stoppedBy}; run the same command again to resume\n`)
      process.exit(signalExitCode(stoppedBy))
    }
    process.stderr.write(`streaming-reader: internal error: ${oneLine(Cause.pretty(exit.cause).split("\n")[0]!)}\n`)
    process.exit(ExitCode.ReadFailed)
  })
}

runMain(program)
