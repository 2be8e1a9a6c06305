/**
 * The options and arguments of every command. They are all the command line needs to parse a
 * command or print its help; what a command runs is loaded only when it runs.
 */
import * as Args from "@effect/cli/Args"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import type * as Command from "@effect/cli/Command"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { parseDurationMs } from "../layers/CommandLine.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { defaultSegments, GiB, MiB, parseSize } from "../services/ReadOptions.js"

/** The most sources `read` copies at once. */
export const maxConcurrency = 1000

const invalid = (text: string) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(text)))

const truncated = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}…` : text)

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

const durationOption = (name: string, fallback: string, description: string, minMs: number) =>
  Options.text(name).pipe(
    Options.withDefault(fallback),
    Options.withDescription(`${description} (default ${fallback})`),
    Options.mapEffect((text) => {
      const ms = parseDurationMs(text)
      return ms === undefined || ms < minMs
        ? invalid(`--${name}: not a duration of at least ${minMs}ms: ${text}`)
        : Effect.succeed(ms)
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
  segments: integerOption(
    "segments",
    defaultSegments,
    `up to n ranged connections for one HTTP(S) object with a known size, a strong validator and Range support; 1 for one connection (default ${defaultSegments})`
  ),
  minSegmentSize: sizeOption("min-segment-size", "4MiB", "smallest range a segment is given or split off"),
  maxConnections: integerOption(
    "max-connections",
    16,
    "most connections to one host from all segmented reads at once (default 16)"
  ),
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
  noHash: Options.boolean("no-hash").pipe(
    Options.withDescription(
      "do not hash the output for --json (its sha256 is null): a copy over segments reads its output back to hash it"
    )
  ),
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
  readonly segments: number
  readonly minSegmentSize: number
  readonly maxConnections: number
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
  segments: flags.segments,
  minSegmentSize: flags.minSegmentSize,
  maxConnections: flags.maxConnections,
  ...Option.match(flags.rate, { onNone: () => ({}), onSome: (rate) => ({ rate }) })
})

/** The options of `demo`. */
export const demoConfig = {
  size: Options.text("size").pipe(
    Options.withDefault("256MiB"),
    Options.withDescription("size of the object served and copied, 1MiB to 64GiB (default 256MiB)"),
    Options.mapEffect((text) => {
      const bytes = parseSize(text)
      return bytes === undefined || bytes < 1 * MiB || bytes > 64 * GiB
        ? invalid(`--size: not a size from 1MiB to 64GiB: ${text}`)
        : Effect.succeed(bytes)
    })
  )
}

/** `--postgres <url>`, else `STREAMING_READER_POSTGRES_URL`; kept redacted. */
export const postgresOption = Options.redacted("postgres").pipe(
  Options.withFallbackConfig(Config.redacted("STREAMING_READER_POSTGRES_URL")),
  Options.withDescription(
    "the job database, postgres://user:password@host:port/database (default: $STREAMING_READER_POSTGRES_URL)"
  )
)

/** The options of `enqueue`. */
export const enqueueConfig = {
  postgres: postgresOption,
  outDir: Options.text("out-dir").pipe(
    Options.withDescription("output directory every worker can reach; each output is named after its source")
  ),
  json: Options.boolean("json").pipe(Options.withDescription("print each job added as one JSON line")),
  sources: Args.text({ name: "source" }).pipe(Args.atLeast(1))
}

/** The parsed `enqueue` command. */
export type EnqueueCommand = Command.Command.ParseConfig<typeof enqueueConfig>

/** The options of `worker`: the queue, the lease, and the read options of `read`. */
export const workerConfig = {
  postgres: postgresOption,
  concurrency: Options.integer("concurrency").pipe(
    Options.withDefault(4),
    Options.withDescription("jobs run at once by this worker (default 4)")
  ),
  lease: durationOption("lease", "30s", "how long a claim holds a job; renewed every third of it", 300),
  pollInterval: durationOption("poll-interval", "1s", "wait between claims when no job is available", 10),
  name: Options.text("name").pipe(
    Options.withDescription("this worker's name in the jobs table (default <hostname>:<pid>)"),
    Options.optional
  ),
  json: Options.boolean("json").pipe(Options.withDescription("print each job event as one JSON line")),
  checkpointEvery: readConfig.checkpointEvery,
  chunkSize: readConfig.chunkSize,
  minChunk: readConfig.minChunk,
  maxChunk: readConfig.maxChunk,
  memoryLimit: readConfig.memoryLimit,
  rate: readConfig.rate,
  retries: readConfig.retries,
  stallTimeout: readConfig.stallTimeout,
  segments: readConfig.segments,
  minSegmentSize: readConfig.minSegmentSize,
  maxConnections: readConfig.maxConnections,
  durable: readConfig.durable
}

/** The parsed `worker` command. */
export type WorkerCommand = Command.Command.ParseConfig<typeof workerConfig>

/** The options of `jobs`. */
export const jobsConfig = {
  postgres: postgresOption,
  json: Options.boolean("json").pipe(Options.withDescription("print each job as one JSON line")),
  id: Args.integer({ name: "id" }).pipe(Args.withDescription("show only this job"), Args.optional)
}

/** The parsed `jobs` command. */
export type JobsCommand = Command.Command.ParseConfig<typeof jobsConfig>
