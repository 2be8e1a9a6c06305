/**
 * The `read` command: `streaming-reader read <source>... (--out <file> | --out-dir <dir>) [options]`.
 * Validates the options as a whole, runs the copies, prints one line per failure, and
 * returns the exit code of DESIGN.md (0 done, 1 read failed, 2 bad usage or input).
 */
import * as Arr from "effect/Array"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { MultiBar, Presets } from "cli-progress"
import { errorLine, ExitCode, exitCodeFor } from "../layers/CommandLine.js"
import { outputNames } from "../layers/OutputNames.js"
import { fileSystemReason, makeDirectories } from "../layers/SystemErrors.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { decodeReadOptions, InvalidOptions } from "../services/ReadOptions.js"
import type { CopySummary } from "../layers/FileCopy.js"
import { makeProgress } from "../layers/ProgressBar.js"
import { copyToFile } from "../layers/FileCopy.js"
import type { ReadCommand, ReadFlags } from "./options.js"
import { maxConcurrency, readOptionsOf } from "./options.js"

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

/** Runs the copies of a planned `read` command; returns the exit code. */
export const runRead = (command: ReadCommand, targets: ReadonlyArray<ReadTarget>) =>
  Effect.gen(function*() {
    const options: ReadOptionsInput = { ...readOptionsOf(command), restart: command.restart }
    const showProgress = process.stdout.isTTY === true && !command.json && !command.quiet
    const bars = showProgress
      ? new MultiBar({
        format: "{bar} {percentage}% | {size} | {rate} | {source}{connections}",
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
          hash: (command.json && !command.noHash) || Option.isSome(command.expectSha256),
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
      makeDirectories(NodePath.resolve(dir))
      if (!NodeFs.statSync(dir).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" })
    },
    catch: (error) => `cannot create --out-dir ${dir}: ${fileSystemReason(error)}`
  })
