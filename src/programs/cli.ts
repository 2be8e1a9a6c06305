/**
 * The command line: `streaming-reader read <source>... (--out <file> | --out-dir <dir>) [options]`.
 * Parses and validates every option, runs the copies, prints one line per failure, and
 * returns the exit code of DESIGN.md (0 done, 1 read failed, 2 bad usage or input).
 */
import { Args, HelpDoc, Options, ValidationError } from "@effect/cli"
import type { Command } from "@effect/cli"
import { Array as Arr, Console, Effect, Logger, LogLevel, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { MultiBar, Presets } from "cli-progress"
import { lockSuffix, partialSuffix } from "../layers/FileDestination.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { decodeReadOptions, formatSize, InvalidOptions, parseSize } from "../services/ReadOptions.js"
import type { CopyError, CopyProgress, CopySummary } from "../layers/FileCopy.js"
import { copyToFile } from "../layers/FileCopy.js"

/** Exit codes of the command line. */
export const ExitCode = { Done: 0, ReadFailed: 1, BadInput: 2 } as const

const badInputTags: ReadonlySet<string> = new Set([
  "InvalidOptions",
  "SourceNotFound",
  "AccessDenied",
  "NotAFile",
  "InvalidUrl",
  "BadRedirect"
])

// Failures of the read itself, whose checkpoint is kept; any tag not listed anywhere is one too.
const readFailedTags: ReadonlySet<string> = new Set([
  "OutputLocked",
  "RetriesExhausted",
  "SourceChanged",
  "IntegrityMismatch"
])

/** The exit code for a copy's failure: 2 for bad input, 1 for a read that failed. */
export const exitCodeFor = (error: CopyError): number => {
  if (badInputTags.has(error._tag)) return ExitCode.BadInput
  if (readFailedTags.has(error._tag)) return ExitCode.ReadFailed
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
      return invalidOptionLine(error)
    case "SourceChanged":
      return `${error.message}; the copy so far is kept, run again with --restart to copy the new version`
    default:
      return error.message
  }
}

/** The flag that sets each read option, and how its values are written on the command line. */
const optionFlags: Readonly<Record<string, { readonly flag: string; readonly duration?: boolean }>> = {
  chunkSize: { flag: "chunk-size" },
  minChunk: { flag: "min-chunk" },
  maxChunk: { flag: "max-chunk" },
  memoryLimit: { flag: "memory-limit" },
  checkpointEvery: { flag: "checkpoint-every" },
  retries: { flag: "retries" },
  rate: { flag: "rate" },
  concurrency: { flag: "concurrency" },
  stallTimeoutMs: { flag: "stall-timeout", duration: true },
  maxRetryDelayMs: { flag: "max-retry-delay", duration: true }
}

/** A duration in milliseconds as it is typed: `500ms`, `30s`. */
export const formatDurationMs = (ms: number): string =>
  ms !== 0 && Number.isInteger(ms / 1000) ? `${ms / 1000}s` : `${ms}ms`

const invalidOptionLine = (error: InvalidOptions) => {
  const known = optionFlags[error.option]
  const flag = known?.flag ?? error.option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
  const show = known?.duration === true
    ? (text: string) => text.replace(/-?\d+(?:\.\d+)?/g, (n) => formatDurationMs(Number(n)))
    : (text: string) => text
  return `invalid option --${flag}: ${show(error.value)} (allowed: ${show(error.allowed)})`
}

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

/** Parses a duration such as `30s`, `500ms`, `2m` or `1500` (milliseconds) into milliseconds. */
export const parseDurationMs = (text: string): number | undefined => {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/i.exec(text.trim())
  if (match === null) return undefined
  const unit = (match[2] ?? "ms").toLowerCase()
  return Math.round(Number(match[1]) * (unit === "m" ? 60_000 : unit === "s" ? 1000 : 1))
}

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

const logLevels = ["all", "trace", "debug", "info", "warning", "error", "fatal", "none"] as const

const levelList = logLevels.join(", ")

const isLogLevel = (text: string): text is typeof logLevels[number] =>
  (logLevels as ReadonlyArray<string>).includes(text)

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
  logLevel: Options.text("log-level").pipe(
    Options.withPseudoName("level"),
    Options.withDescription(`the lowest level of log lines printed on stderr: ${levelList} (default warning)`),
    Options.mapEffect((text) =>
      isLogLevel(text) ? Effect.succeed(text) : invalid(`--log-level: not a level: ${text} (one of ${levelList})`)
    ),
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

/** The longest output name: its partial file and its lock must fit in a file name (255 bytes) too. */
export const maxNameBytes = 255 - Math.max(Buffer.byteLength(partialSuffix), Buffer.byteLength(lockSuffix))

/**
 * The name of a source's output in `--out-dir`: its file name, or for a URL the last segment of its
 * path, percent-decoded (never its query or fragment); `/`, `\`, NUL and control characters become
 * `_`, an empty name, `.` or `..` becomes `index`, and it is cut to `maxNameBytes` bytes of UTF-8,
 * its extension kept.
 */
export const outputName = (source: string): string => {
  const segment = isUrl(source) ? percentDecode(lastSegment(urlPathname(source))) : NodePath.basename(source)
  const safe = segment.replace(/[/\\\u0000-\u001f\u007f]/g, "_")
  return safe === "" || safe === "." || safe === ".." ? "index" : capBytes(safe, maxNameBytes)
}

/**
 * The output names of `sources` in one directory, in order: distinct, and none the partial file or
 * lock of another. A name taken already gets `.1`, `.2`, … (the first source keeps it), so the same
 * command always gives the same names.
 */
export const outputNames = (sources: ReadonlyArray<string>): ReadonlyArray<string> => {
  const taken = new Set<string>()
  const helpers = (name: string) => [name + partialSuffix, name + lockSuffix]
  const clashes = (name: string) =>
    taken.has(name) ||
    helpers(name).some((helper) => taken.has(helper)) ||
    [...taken].some((other) => helpers(other).includes(name))
  return sources.map((source) => {
    const base = outputName(source)
    let name = base
    for (let n = 1; clashes(name); n++) {
      const suffix = `.${n}`
      name = capBytes(base, maxNameBytes - Buffer.byteLength(suffix)) + suffix
    }
    taken.add(name)
    return name
  })
}

const isUrl = (source: string) => /^https?:\/\//i.test(source)

const urlPathname = (url: string) => {
  try {
    return new URL(url).pathname
  } catch {
    return url.replace(/^https?:\/\/[^/?#]*/i, "").replace(/[?#].*$/s, "")
  }
}

/** The last non-empty `/`-separated segment of a path ("" when there is none). */
const lastSegment = (path: string) => path.split("/").filter((segment) => segment !== "").pop() ?? ""

/** Decodes each run of percent escapes that is valid UTF-8; any other text is kept as it is. */
const percentDecode = (text: string) =>
  text.replace(/(?:%[0-9a-f]{2})+/gi, (run) => {
    try {
      return decodeURIComponent(run)
    } catch {
      return run
    }
  })

/** `name` cut to at most `max` bytes of UTF-8 on a character boundary, its extension kept when it is short. */
const capBytes = (name: string, max: number): string => {
  if (Buffer.byteLength(name) <= max) return name
  const extension = NodePath.extname(name)
  const extensionBytes = Buffer.byteLength(extension)
  return extension !== "" && extensionBytes <= max / 4
    ? cutBytes(name.slice(0, -extension.length), max - extensionBytes) + extension
    : cutBytes(name, max)
}

const cutBytes = (text: string, max: number) => {
  let out = ""
  let bytes = 0
  for (const char of text) {
    bytes += Buffer.byteLength(char)
    if (bytes > max) break
    out += char
  }
  return out
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
  }).pipe((copies) =>
    Option.match(command.logLevel, {
      onNone: () => copies,
      onSome: (level) => Logger.withMinimumLogLevel(copies, LogLevel.fromLiteral(logLevelLiterals[level]))
    })
  )

/** A message that may quote a file name with line breaks in it, on one line. */
const onOneLine = (text: string) => text.replace(/[\u0000-\u001f\u007f]+/g, " ")

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
    catch: (error) => `cannot create --out-dir ${dir}: ${fsReason(error)}`
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

const fsReasons: Readonly<Record<string, string>> = {
  EEXIST: "a file is in the way",
  ENOTDIR: "a file is in the way",
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "read-only file system",
  ENOSPC: "no space left on device",
  ENAMETOOLONG: "name too long"
}

const fsReason = (error: unknown) => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return (code === undefined ? undefined : fsReasons[code]) ?? (error instanceof Error ? error.message : String(error))
}
