/**
 * The results of one bench run as the report reads them: every run of every variant, by id,
 * and the figures derived from them (MB/s, RSS above idle, chunk figures).
 */
import type { ChunkFigures, RunnerResult } from "../runners/protocol.js"
import type { ChildOutcome } from "./child.js"
import type { ProfileSummary } from "./profile.js"
import type { Spread } from "./stats.js"
import { MB, mbPerSec, median, spread } from "./stats.js"

/** Every run of one variant. */
export interface VariantRuns {
  readonly id: string
  readonly label: string
  /** Bytes one run must move (checked against what the runner reports). */
  readonly bytes: number
  readonly outcomes: Array<ChildOutcome>
}

/** The machine the run was measured on. */
export interface MachineInfo {
  readonly cpus: string
  readonly cores: number
  readonly memoryGb: number
  readonly node: string
  readonly os: string
  readonly commit: string
}

/** Sizes and counts a run used (smaller in quick mode). */
export interface BenchConfig {
  readonly quick: boolean
  readonly bigSize: number
  readonly httpSize: number
  readonly smallSize: number
  readonly latencySize: number
  readonly streams: number
  readonly streamSize: number
  /** Runs of each variant in the main comparisons (ours against the baselines). */
  readonly runs: number
  /** Runs of each other variant (features off, other baselines, fixed chunk sizes). */
  readonly sideRuns: number
  readonly concurrentRuns: number
  readonly soakMs: number
  /** Files of `streamSize` the soak loop reads after the big one, each round. */
  readonly soakSmallFiles: number
  readonly latencyDelayMs: number
  /** The object nginx serves. */
  readonly nginxSize: number
  /** The object of the faulty HTTP reads, and how many of them run at once. */
  readonly faultySize: number
  readonly faultyReads: number
  /** The object of the segmented reads, and the per-connection `limit_rate` nginx serves it at (bytes/s). */
  readonly segmentsSize: number
  readonly segmentsLimitRate: number
  /** Runs of each segmented-read variant (ours and `aria2c` at each connection count). */
  readonly segmentsRuns: number
  /** Runs of each start-up variant (`--help`). */
  readonly startupRuns: number
}

/** One CPU profile taken during the run: its first pass (cold) and its second (warm). */
export interface ProfileResult {
  readonly label: string
  readonly passes: ReadonlyArray<{
    readonly pass: string
    readonly summary: ProfileSummary
    /** Throughput of the pass under the profiler (which slows it down). */
    readonly mbPerSec: number
  }>
}

/** Everything one bench run measured. */
export interface BenchResults {
  readonly config: BenchConfig
  readonly machine: MachineInfo
  readonly startedAt: Date
  readonly finishedAt: Date
  readonly variants: Map<string, VariantRuns>
  readonly profiles: Array<ProfileResult>
  /** Scenarios that could not run at all, with why. */
  readonly scenarioErrors: Array<{ readonly scenario: string; readonly error: string }>
  /** Scenarios left out on purpose (a tool this machine lacks), with why. */
  readonly skipped: Array<{ readonly scenario: string; readonly reason: string }>
  readonly durations: Array<{ readonly scenario: string; readonly seconds: number }>
}

/** The runner results of the runs that succeeded. */
export const okResults = (variant: VariantRuns | undefined): ReadonlyArray<RunnerResult> =>
  (variant?.outcomes ?? []).flatMap((outcome) => outcome.ok && outcome.result !== undefined ? [outcome.result] : [])

/** The runs that succeeded (runner or CLI). */
export const okOutcomes = (variant: VariantRuns | undefined): ReadonlyArray<ChildOutcome> =>
  (variant?.outcomes ?? []).filter((outcome) => outcome.ok)

/** In-process MB/s of each successful run. */
export const throughput = (variant: VariantRuns | undefined): Spread =>
  spread(okResults(variant).map((result) => mbPerSec(result.bytes, result.ms)))

/** In-process MB/s of the second pass (same work again in the same process) of each successful run. */
export const warmThroughput = (variant: VariantRuns | undefined): Spread =>
  spread(
    okResults(variant).flatMap((result) => result.warm === undefined ? [] : [mbPerSec(result.bytes, result.warm.ms)])
  )

/** Whole-process MB/s (spawn to exit) of each successful run. */
export const wallThroughput = (variant: VariantRuns | undefined): Spread =>
  spread(okOutcomes(variant).map((outcome) => mbPerSec(variant?.bytes ?? 0, outcome.wallMs)))

/** Whole-process seconds of each successful run. */
export const wallSeconds = (variant: VariantRuns | undefined): Spread =>
  spread(okOutcomes(variant).map((outcome) => outcome.wallMs / 1000))

/** Whole-process milliseconds of each successful run. */
export const wallMs = (variant: VariantRuns | undefined): Spread =>
  spread(okOutcomes(variant).map((outcome) => outcome.wallMs))

/** Peak RSS minus the RSS at idle, in MB, of each successful run. */
export const rssAboveIdle = (variant: VariantRuns | undefined): Spread =>
  spread(okResults(variant).map((result) => (result.peakRss - result.idleRss) / MB))

/** RSS at idle, in MB. */
export const idleRss = (variant: VariantRuns | undefined): Spread =>
  spread(okResults(variant).map((result) => result.idleRss / MB))

/** Peak RSS seen from `/proc` by the parent, in MB. */
export const procPeakRss = (variant: VariantRuns | undefined): Spread =>
  spread(okOutcomes(variant).map((outcome) => outcome.procPeakRss / MB))

/** A variant's chunk figures: medians over its runs. */
export interface ChunkSummary extends ChunkFigures {
  /** Bytes per chunk (bytes moved / chunks counted): exact, unlike the summary's median. */
  readonly meanChunkBytes: number
}

/** The median over runs of each chunk figure of the first pass (or the second, `warm`); `undefined` when none. */
export const chunkFigures = (variant: VariantRuns | undefined, warm = false): ChunkSummary | undefined => {
  const all = okResults(variant).flatMap((result) => {
    const chunks = warm ? result.warm?.chunks : result.chunks
    return chunks === undefined ? [] : [{ ...chunks, meanChunkBytes: result.bytes / chunks.chunks }]
  })
  if (all.length === 0) return undefined
  const of = (pick: (figures: ChunkSummary) => number) => median(all.map(pick))
  return {
    chunks: of((f) => f.chunks),
    meanChunkBytes: of((f) => f.meanChunkBytes),
    maxChunkBytes: of((f) => f.maxChunkBytes),
    p50ChunkMs: of((f) => f.p50ChunkMs),
    p95ChunkMs: of((f) => f.p95ChunkMs),
    p99ChunkMs: of((f) => f.p99ChunkMs)
  }
}

/** A number field of the CLI's `--json` line (the last line the run kept of its stdout) in each successful run. */
export const jsonField = (variant: VariantRuns | undefined, field: string): Spread =>
  spread(
    okOutcomes(variant).flatMap((outcome) => {
      const line = (outcome.stdout ?? "").trim().split("\n").pop() ?? ""
      try {
        const value = (JSON.parse(line) as Record<string, unknown>)[field]
        return typeof value === "number" ? [value] : []
      } catch {
        return []
      }
    })
  )

/** Median milliseconds of the work of each successful run. */
export const workMs = (variant: VariantRuns | undefined): number =>
  median(okResults(variant).map((result) => result.ms))

/** The errors of the runs that failed. */
export const failures = (variant: VariantRuns | undefined): ReadonlyArray<string> =>
  (variant?.outcomes ?? []).flatMap((outcome) => outcome.ok ? [] : [outcome.error ?? "failed"])
