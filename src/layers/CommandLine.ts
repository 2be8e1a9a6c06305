/**
 * What a command tells a person: the exit code of each failure (0 done, 1 read failed, 2 bad
 * usage or input), its one line naming options as the command line spells them, and durations
 * as they are typed (`500ms`, `30s`, `2m`).
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import type { InvalidOptions } from "../services/ReadOptions.js"
import type { CopyError } from "./FileCopy.js"
import { isRetryableStatus } from "./sources/HttpSource.js"

/** Exit codes of the command line. */
export const ExitCode = { Done: 0, ReadFailed: 1, BadInput: 2 } as const

const badInputTags: ReadonlySet<string> = new Set([
  "InvalidOptions",
  "SourceNotFound",
  "AccessDenied",
  "NotAFile",
  "InvalidUrl",
  "BadRedirect",
  "TlsFailure"
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
    const clientError = error.status >= 400 && error.status < 500 && !isRetryableStatus(error.status)
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

const shortUnits: Readonly<Record<string, string>> = { ms: "millis", s: "seconds", m: "minutes", h: "hours" }

/**
 * Parses a duration such as `30s`, `500ms`, `2m`, `1500` (milliseconds) or `30 seconds` into
 * milliseconds, through `Duration.decodeUnknown`; `undefined` when it is not one.
 */
export const parseDurationMs = (text: string): number | undefined => {
  const short = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(text.trim())
  const input = short === null ? text.trim() : `${short[1]} ${shortUnits[(short[2] ?? "ms").toLowerCase()]}`
  return Option.match(Duration.decodeUnknown(input), {
    onNone: () => undefined,
    onSome: (duration) => Duration.isFinite(duration) ? Math.round(Duration.toMillis(duration)) : undefined
  })
}
