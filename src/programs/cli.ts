/**
 * The command line: `streaming-reader read <source>... (--out <file> | --out-dir <dir>) [options]`.
 * Parses and validates every option, runs the copies, prints one line per failure, and
 * returns the exit code of DESIGN.md (0 done, 1 read failed, 2 bad usage or input).
 */
import { Args, HelpDoc, Options, ValidationError } from "@effect/cli"
import type { Command } from "@effect/cli"
import { Array as Arr, Console, Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { MultiBar, Presets } from "cli-progress"
import { errorLine, ExitCode, exitCodeFor, parseDurationMs } from "../layers/CommandLine.js"
import { outputNames } from "../layers/OutputNames.js"
import { fileSystemReason } from "../layers/SystemErrors.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { decodeReadOptions, InvalidOptions, parseSize } from "../services/ReadOptions.js"
import type { CopySummary } from "../layers/FileCopy.js"
import { makeProgress } from "../layers/ProgressBar.js"
import { copyToFile } from "../layers/FileCopy.js"

const maxConcurrency = 1000

/** Checks the read options and `--concurrency` as a whole, before anything is opened. */
export const checkReadFlags = (flags: ReadFlags & { readonly concurrency: number }) =>
  Effect.zipRight(
    decodeReadOptions(readOptionsOf(flags)),
    Number.isInteger(flags.concurrency) && flags.concurrency >= 1 && flags.concurrency <= maxConcurrency
      ? Effect.void
      : Effect.fail(
        new InvalidOptions({
          option: "concurrency",
          value: String(flags.concurrency),
          allowed: `1 to ${maxConcurrency}`
        })
      )
  )

const invalid = (text: string) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(text)))

const sizeOption = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("size"),
    Options.withDefault(fallback),
    Options.withDescription(`${description} (sizes take B, KiB, MiB or GiB; default ${fallback})`),
    Options.mapEffect((text) => {
      const bytes = parseSize(text)
      return bytes === undefined ? invalid(`--${name}: not a size: ${text} (try 64KiB)`) : Effect.succeed(bytes)
    })
  )

const integerOption = (name: string, fallback: number, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("integer"),
    Options.withDefault(String(fallback)),
    Options.withDescription(description),
    Options.mapEffect((text) => {
      const value = /^\s*-?\d+\s*$/.test(text) ? Number(text) : Number.NaN
      return Number.isSafeInteger(value) ? Effect.succeed(value) : invalid(`--${name}: not a whole number: ${text}`)
    })
  )

const rateOption = Options.text("rate").pipe(
  Options.withPseudoName("size/s"),
  Options.withDescription("cap on the read rate per source, e.g. 40MiB/s (default: unlimited)"),
  Options.mapEffect((text) => {
    const bytes = parseSize(text.replace(/\/s$/i, ""))
    return bytes === undefined || bytes <= 0
      ? invalid(`--rate: not a rate: ${text} (try 40MiB/s)`)
      : Effect.succeed(bytes)
  }),
  Options.optional
)

/** The options and arguments of `read`. */
export const readConfig = {
  out: Options.text("out").pipe(Options.withDescription("output file (one source)"), Options.optional),
  outDir: Options.text("out-dir").pipe(
    Options.withDescription(
      "output directory, created when missing; each output is named after its source's last path segment"
    ),
    Options.optional
  ),
  concurrency: integerOption("concurrency", 4, "sources copied at once with --out-dir (default 4)"),
  state: Options.text("state").pipe(
    Options.withDefault(".streaming-reader/state.db"),
    Options.withDescription("checkpoint database (default .streaming-reader/state.db)")
  ),
  checkpointEvery: integerOption("checkpoint-every", 5, "save a checkpoint every n chunks (default 5)"),
  chunkSize: sizeOption("chunk-size", "64KiB", "first chunk size"),
  minChunk: sizeOption("min-chunk", "32KiB", "smallest adaptive chunk"),
  maxChunk: sizeOption("max-chunk", "256KiB", "largest adaptive chunk"),
  memoryLimit: sizeOption("memory-limit", "50MiB", "hard limit of bytes buffered by all reads"),
  rate: rateOption,
  retries: integerOption("retries", 10, "retries in a row without progress before giving up (default 10)"),
  stallTimeout: Options.text("stall-timeout").pipe(
    Options.withPseudoName("duration"),
    Options.withDefault("30s"),
    Options.withDescription("no bytes for this long ends the attempt and resumes it (default 30s)"),
    Options.mapEffect((text) => {
      const ms = parseDurationMs(text)
      return ms === undefined ? invalid(`--stall-timeout: not a duration: ${text} (try 30s)`) : Effect.succeed(ms)
    })
  ),
  restart: Options.boolean("restart").pipe(Options.withDescription("ignore any checkpoint and start from byte 0")),
  durable: Options.boolean("durable").pipe(
    Options.withDescription("fsync the output before each checkpoint and at the end")
  ),
  expectSha256: Options.text("expect-sha256").pipe(
    Options.withPseudoName("hex"),
    Options.withDescription("fail (exit 1) unless the output's sha256 is this hex digest"),
    Options.mapEffect((text) =>
      /^[0-9a-f]{64}$/i.test(text)
        ? Effect.succeed(text.toLowerCase())
        : invalid(`--expect-sha256: not a sha256 digest (64 hex characters): ${truncated(text, 80)}`)
    ),
    Options.optional
  ),
  json: Options.boolean("json").pipe(Options.withDescription("print one JSON summary line per source on stdout")),
  quiet: Options.boolean("quiet").pipe(Options.withDescription("no progress bar")),
  metrics: Options.text("metrics").pipe(
    Options.withDescription("write every metric in the Prometheus text format to this file at the end"),
    Options.optional
  ),
  sources: Args.text({ name: "source" }).pipe(
    Args.mapEffect((source) =>
      /^-./.test(source)
        ? Effect.fail(HelpDoc.p(`unknown option ${truncated(source.replace(/=.*$/s, ""), 80)} (see --help)`))
        : Effect.succeed(source)
    ),
    Args.atLeast(1)
  )
}

const truncated = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}…` : text)

/** The parsed `read` command. */
export type ReadCommand = Command.Command.ParseConfig<typeof readConfig>

/** The flags `read` and `worker` share that set read options. */
export interface ReadFlags {
  readonly chunkSize: number
  readonly minChunk: number
  readonly maxChunk: number
  readonly memoryLimit: number
  readonly checkpointEvery: number
  readonly retries: number
  readonly stallTimeout: number
  readonly rate: Option.Option<number>
}

/** The read options set by the flags `read` and `worker` share. */
export const readOptionsOf = (flags: ReadFlags): ReadOptionsInput => ({
  chunkSize: flags.chunkSize,
  minChunk: flags.minChunk,
  maxChunk: flags.maxChunk,
  memoryLimit: flags.memoryLimit,
  checkpointEvery: flags.checkpointEvery,
  retries: flags.retries,
  stallTimeoutMs: flags.stallTimeout,
  ...Option.match(flags.rate, { onNone: () => ({}), onSome: (rate) => ({ rate }) })
})

/** Runs the copies of a planned `read` command; returns the exit code. */
export const runRead = (command: ReadCommand, targets: ReadonlyArray<ReadTarget>) =>
  Effect.gen(function*() {
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
            Effect.as(Console.error(`streaming-reader: ${onOneLine(errorLine(error))}`), exitCodeFor(error))
          )
        ),
      { concurrency: command.concurrency }
    ).pipe(Effect.ensuring(Effect.sync(() => bars?.stop())))
    const written = yield* Option.match(command.metrics, {
      onNone: () => Effect.succeed(true),
      onSome: (path) => writeMetrics(path)
    })
    return Math.max(written ? ExitCode.Done : ExitCode.ReadFailed, ...results)
  })

/** A message that may quote a file name with line breaks in it, on one line. */
const onOneLine = (text: string) => text.replace(/[\u0000-\u001f\u007f]+/g, " ")

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
    Effect.catchAll((reason) =>
      Effect.as(Console.error(`streaming-reader: cannot write metrics to ${path}: ${reason}`), false)
    )
  )

/** One copy of a `read`: a source and the file it is copied to. */
export interface ReadTarget {
  readonly source: string
  readonly out: string
}

/**
 * Checks a `read` before anything is opened: its option values, and where each source goes
 * (`--out-dir` is created when missing). Fails with the line to print (exit 2).
 */
export const planRead = (command: ReadCommand): Effect.Effect<ReadonlyArray<ReadTarget>, string> =>
  checkReadFlags(command).pipe(
    Effect.mapError(errorLine),
    Effect.zipRight(Effect.suspend(() => {
      const { outDir, out, sources } = command
      if (Option.isSome(out) && Option.isSome(outDir)) return Effect.fail("give either --out or --out-dir, not both")
      if (Option.isSome(out)) {
        if (sources.length > 1) return Effect.fail("several sources need --out-dir <dir>, not --out")
        return Effect.succeed([{ source: sources[0]!, out: out.value }])
      }
      if (Option.isNone(outDir)) return Effect.fail("missing --out <file> (or --out-dir <dir>)")
      const dir = outDir.value
      return Effect.as(
        makeDirectory(dir),
        Arr.zipWith(sources, outputNames(sources), (source, name) => ({ source, out: NodePath.join(dir, name) }))
      )
    }))
  )

/** `mkdir -p dir`; fails with the line to print when it cannot be made or is not a directory. */
const makeDirectory = (dir: string) =>
  Effect.try({
    try: () => {
      makeParents(NodePath.resolve(dir))
      if (!NodeFs.statSync(dir).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" })
    },
    catch: (error) => `cannot create --out-dir ${dir}: ${fileSystemReason(error)}`
  })

/**
 * Makes `dir` and its missing parents. Not `mkdirSync(dir, { recursive: true })`: on Node 20 it
 * never returns for a directory that cannot be made under `/proc`.
 */
const makeParents = (dir: string): void => {
  try {
    NodeFs.mkdirSync(dir)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === "EEXIST") return
    const parent = NodePath.dirname(dir)
    if (code !== "ENOENT" || parent === dir) throw error
    makeParents(parent)
    NodeFs.mkdirSync(dir)
  }
}
