/**
 * The command line: `streaming-reader read <source>... (--out <file> | --out-dir <dir>) [options]`.
 * Parses and validates every option, runs the copies, prints one line per failure, and
 * returns the exit code of DESIGN.md (0 done, 1 read failed, 2 bad usage or input).
 */
import { Args, HelpDoc, Options, ValidationError } from "@effect/cli"
import type { Command } from "@effect/cli"
import { Console, Effect, Logger, LogLevel, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { MultiBar, Presets } from "cli-progress"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { formatSize, parseSize } from "../services/ReadOptions.js"
import type { CopyError, CopyProgress, CopySummary } from "./copy.js"
import { copyToFile } from "./copy.js"

/** Exit codes of the command line. */
export const ExitCode = { Done: 0, ReadFailed: 1, BadInput: 2 } as const

const badInputTags: ReadonlySet<string> = new Set([
  "InvalidOptions",
  "SourceNotFound",
  "AccessDenied",
  "NotAFile",
  "InvalidUrl"
])

/** The exit code for a copy's failure: 2 for bad input, 1 for a read that failed. */
export const exitCodeFor = (error: CopyError): number => {
  if (badInputTags.has(error._tag)) return ExitCode.BadInput
  if (error._tag === "OutputFailed") return error.atOpen ? ExitCode.BadInput : ExitCode.ReadFailed
  if (error._tag === "HttpStatusError") {
    const clientError = error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429
    return clientError ? ExitCode.BadInput : ExitCode.ReadFailed
  }
  return ExitCode.ReadFailed
}

/** The one line printed for a failure, naming options as the command line spells them. */
export const errorLine = (error: CopyError): string => {
  switch (error._tag) {
    case "InvalidOptions":
      return `invalid option --${error.option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ${error.value} ` +
        `(allowed: ${error.allowed})`
    case "SourceChanged":
      return `${error.message}; the copy so far is kept, run again with --restart to copy the new version`
    default:
      return error.message
  }
}

/** Parses a duration such as `30s`, `500ms`, `2m` or `1500` (milliseconds) into milliseconds. */
export const parseDurationMs = (text: string): number | undefined => {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/i.exec(text.trim())
  if (match === null) return undefined
  const unit = (match[2] ?? "ms").toLowerCase()
  return Math.round(Number(match[1]) * (unit === "m" ? 60_000 : unit === "s" ? 1000 : 1))
}

const sizeOption = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(
    Options.withDefault(fallback),
    Options.withDescription(`${description} (sizes take B, KiB, MiB or GiB; default ${fallback})`),
    Options.mapEffect((text) => {
      const bytes = parseSize(text)
      return bytes === undefined
        ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name}: not a size: ${text} (try 64KiB)`)))
        : Effect.succeed(bytes)
    })
  )

const rateOption = Options.text("rate").pipe(
  Options.withDescription("cap on the read rate per source, e.g. 40MiB/s (default: unlimited)"),
  Options.mapEffect((text) => {
    const bytes = parseSize(text.replace(/\/s$/i, ""))
    return bytes === undefined || bytes <= 0
      ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--rate: not a rate: ${text} (try 40MiB/s)`)))
      : Effect.succeed(bytes)
  }),
  Options.optional
)

/** The options and arguments of `read`. */
export const readConfig = {
  out: Options.text("out").pipe(Options.withDescription("output file (one source)"), Options.optional),
  outDir: Options.text("out-dir").pipe(
    Options.withDescription("output directory; each output is named after its source's last path segment"),
    Options.optional
  ),
  concurrency: Options.integer("concurrency").pipe(
    Options.withDefault(4),
    Options.withDescription("sources copied at once with --out-dir (default 4)")
  ),
  state: Options.text("state").pipe(
    Options.withDefault(".streaming-reader/state.db"),
    Options.withDescription("checkpoint database (default .streaming-reader/state.db)")
  ),
  checkpointEvery: Options.integer("checkpoint-every").pipe(
    Options.withDefault(5),
    Options.withDescription("save a checkpoint every n chunks (default 5)")
  ),
  chunkSize: sizeOption("chunk-size", "64KiB", "first chunk size"),
  minChunk: sizeOption("min-chunk", "32KiB", "smallest adaptive chunk"),
  maxChunk: sizeOption("max-chunk", "256KiB", "largest adaptive chunk"),
  memoryLimit: sizeOption("memory-limit", "50MiB", "hard limit of bytes buffered by all reads"),
  rate: rateOption,
  retries: Options.integer("retries").pipe(
    Options.withDefault(10),
    Options.withDescription("retries in a row without progress before giving up (default 10)")
  ),
  stallTimeout: Options.text("stall-timeout").pipe(
    Options.withDefault("30s"),
    Options.withDescription("no bytes for this long ends the attempt and resumes it (default 30s)"),
    Options.mapEffect((text) => {
      const ms = parseDurationMs(text)
      return ms === undefined
        ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--stall-timeout: not a duration: ${text} (try 30s)`)))
        : Effect.succeed(ms)
    })
  ),
  restart: Options.boolean("restart").pipe(Options.withDescription("ignore any checkpoint and start from byte 0")),
  durable: Options.boolean("durable").pipe(
    Options.withDescription("fsync the output before each checkpoint and at the end")
  ),
  expectSha256: Options.text("expect-sha256").pipe(
    Options.withDescription("fail (exit 1) unless the output's sha256 is this hex digest"),
    Options.optional
  ),
  json: Options.boolean("json").pipe(Options.withDescription("print one JSON summary line per source on stdout")),
  quiet: Options.boolean("quiet").pipe(Options.withDescription("no progress bar")),
  metrics: Options.text("metrics").pipe(
    Options.withDescription("write every metric in the Prometheus text format to this file at the end"),
    Options.optional
  ),
  logLevel: Options.choice("log-level", ["all", "trace", "debug", "info", "warning", "error", "fatal", "none"]).pipe(
    Options.withDefault("warning"),
    Options.withDescription("the lowest level of log lines printed on stderr (default warning)")
  ),
  sources: Args.text({ name: "source" }).pipe(Args.atLeast(1))
}

/** The parsed `read` command. */
export type ReadCommand = Command.Command.ParseConfig<typeof readConfig>

/** The output path of a source copied into `dir`: its last path segment. */
export const outputName = (source: string): string => {
  const path = /^https?:\/\//i.test(source) ? safePathname(source) : source
  const base = NodePath.posix.basename(path.replace(/\\/g, "/").replace(/\/+$/, ""))
  return base === "" || base === "." || base === ".." ? "index" : decodeURIComponentSafe(base)
}

const safePathname = (url: string) => {
  try {
    return new URL(url).pathname
  } catch {
    return url
  }
}

const decodeURIComponentSafe = (text: string) => {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** A progress bar in `bars` for one copy. */
export const makeProgress = (bars: MultiBar): CopyProgress => {
  let bar: ReturnType<MultiBar["create"]> | undefined
  let done = 0
  return {
    start: (source, total, startOffset) => {
      done = startOffset
      bar = bars.create(total ?? 0, startOffset, { source, size: formatSize(startOffset) })
    },
    advance: (bytes) => {
      done += bytes
      bar?.update(done, { size: formatSize(done) })
    },
    stop: () => bar?.stop()
  }
}

/** The read options set by the flags `read` and `worker` share. */
export const readOptionsOf = (flags: {
  readonly chunkSize: number
  readonly minChunk: number
  readonly maxChunk: number
  readonly memoryLimit: number
  readonly checkpointEvery: number
  readonly retries: number
  readonly stallTimeout: number
  readonly rate: Option.Option<number>
}): ReadOptionsInput => ({
  chunkSize: flags.chunkSize,
  minChunk: flags.minChunk,
  maxChunk: flags.maxChunk,
  memoryLimit: flags.memoryLimit,
  checkpointEvery: flags.checkpointEvery,
  retries: flags.retries,
  stallTimeoutMs: flags.stallTimeout,
  ...Option.match(flags.rate, { onNone: () => ({}), onSome: (rate) => ({ rate }) })
})

/** Runs the `read` command; returns the exit code. */
export const runRead = (command: ReadCommand) =>
  Effect.gen(function*() {
    const targets = yield* planOutputs(command)
    if (typeof targets === "string") {
      yield* Console.error(`streaming-reader: ${targets}`)
      return ExitCode.BadInput
    }
    const options: ReadOptionsInput = { ...readOptionsOf(command), restart: command.restart }
    const showProgress = process.stdout.isTTY === true && !command.json && !command.quiet
    const bars = showProgress
      ? new MultiBar({
        format: "{bar} {percentage}% | {size} | {source}",
        hideCursor: true,
        clearOnComplete: false
      }, Presets.shades_classic)
      : undefined
    const results = yield* Effect.forEach(
      targets,
      ({ out, source }) =>
        copyToFile({
          source,
          out,
          options,
          hash: command.json || Option.isSome(command.expectSha256),
          durable: command.durable,
          ...Option.match(command.expectSha256, { onNone: () => ({}), onSome: (expectSha256) => ({ expectSha256 }) }),
          ...(bars === undefined ? {} : { progress: makeProgress(bars) })
        }).pipe(
          Effect.tap((summary: CopySummary) => command.json ? Console.log(JSON.stringify(summary)) : Effect.void),
          Effect.as(ExitCode.Done),
          Effect.catchAll((error) =>
            Effect.as(Console.error(`streaming-reader: ${errorLine(error)}`), exitCodeFor(error))
          )
        ),
      { concurrency: Math.max(1, command.concurrency) }
    ).pipe(Effect.ensuring(Effect.sync(() => bars?.stop())))
    const written = yield* Option.match(command.metrics, {
      onNone: () => Effect.succeed(true),
      onSome: (path) => writeMetrics(path)
    })
    return Math.max(written ? ExitCode.Done : ExitCode.ReadFailed, ...results)
  }).pipe(Logger.withMinimumLogLevel(LogLevel.fromLiteral(logLevelLiterals[command.logLevel])))

const logLevelLiterals = {
  all: "All",
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warning: "Warning",
  error: "Error",
  fatal: "Fatal",
  none: "None"
} as const

/** Writes the metrics snapshot to `path`; prints one line and returns false when it cannot. */
const writeMetrics = (path: string) =>
  Effect.flatMap(ReaderMetrics, (metrics) => metrics.prometheus).pipe(
    Effect.flatMap((text) =>
      Effect.try({
        try: () => NodeFs.writeFileSync(path, text),
        catch: (error) => (error instanceof Error ? error.message : String(error))
      })
    ),
    Effect.as(true),
    Effect.catchAll((reason) => Effect.as(Console.error(`streaming-reader: cannot write metrics to ${path}: ${reason}`), false))
  )

const planOutputs = (command: ReadCommand) =>
  Effect.sync((): ReadonlyArray<{ readonly source: string; readonly out: string }> | string => {
    const { outDir, out, sources } = command
    if (Option.isSome(out) && Option.isSome(outDir)) return "give either --out or --out-dir, not both"
    if (Option.isSome(out)) {
      if (sources.length > 1) return "several sources need --out-dir <dir>, not --out"
      return [{ source: sources[0]!, out: out.value }]
    }
    if (Option.isSome(outDir)) {
      return sources.map((source) => ({ source, out: NodePath.join(outDir.value, outputName(source)) }))
    }
    return "missing --out <file> (or --out-dir <dir>)"
  })
