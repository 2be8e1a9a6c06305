/**
 * The compositions: the platform (Node file system and HTTP client), the basic stack (plain
 * parts) and the enhanced stack (adaptive parts, each behind a feature flag). In the enhanced
 * stack the memory monitor feeds the budget, the budget and the monitor feed the pressure level,
 * and the level drives the chunk sizer, the rate limiter, new reads and the emergency cleanup.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ConfigError from "effect/ConfigError"
import type { AdaptiveChunkSizer } from "../services/AdaptiveChunkSizer.js"
import type { AdaptiveMemoryManager } from "../services/AdaptiveMemoryManager.js"
import type { AdaptiveRateLimiter } from "../services/AdaptiveRateLimiter.js"
import type { BackpressureController } from "../services/BackpressureController.js"
import type { ByteSource } from "../services/ByteSource.js"
import type { CheckpointStore, CheckpointStoreError } from "../services/CheckpointStore.js"
import type { MemoryMonitor } from "../services/MemoryMonitor.js"
import type { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ResourceCleanupManager } from "../services/ResourceCleanupManager.js"
import type { StreamingReader } from "../services/StreamingReader.js"
import type { StreamRecoveryManager } from "../services/StreamRecoveryManager.js"
import { FixedChunkSizer, NoCheckpoints, NoPressure, NoRateLimit, NoRetries, UnboundedMemory } from "./Basic.js"
import * as AdaptiveChunkSizerLive from "./AdaptiveChunkSizerLive.js"
import * as AdaptiveMemoryManagerLive from "./AdaptiveMemoryManagerLive.js"
import * as AdaptiveRateLimiterLive from "./AdaptiveRateLimiterLive.js"
import * as BackpressureControllerLive from "./BackpressureControllerLive.js"
import * as ByteSourceLive from "./ByteSourceLive.js"
import * as CheckpointStoreMemory from "./CheckpointStoreMemory.js"
import * as CheckpointStoreSqlite from "./CheckpointStoreSqlite.js"
import * as MemoryMonitorLive from "./MemoryMonitorLive.js"
import * as ReaderMetricsLive from "./ReaderMetricsLive.js"
import * as ResourceCleanupManagerLive from "./ResourceCleanupManagerLive.js"
import * as StreamingReaderLive from "./StreamingReaderLive.js"
import * as StreamRecoveryManagerLive from "./StreamRecoveryManagerLive.js"

/** Node's file system, paths, command executor and undici HTTP client. */
export const PlatformLive: Layer.Layer<NodeContext.NodeContext | HttpClient.HttpClient> = Layer.mergeAll(
  NodeContext.layer,
  NodeHttpClient.layerUndici
)

/** What every stack offers its programs. */
export type ReaderServices = StreamingReader | ReaderMetrics | MemoryMonitor | ByteSource

/** Every part of the reader, as the test stack offers them for assertions. */
export type ReaderParts =
  | ReaderServices
  | AdaptiveChunkSizer
  | AdaptiveMemoryManager
  | AdaptiveRateLimiter
  | BackpressureController
  | CheckpointStore
  | StreamRecoveryManager
  | ResourceCleanupManager

/** The basic reader: fixed chunk size, no budget, no rate limit, no retries, no checkpoints. */
export const BasicStack: Layer.Layer<ReaderServices, never, FileSystem.FileSystem | HttpClient.HttpClient> =
  StreamingReaderLive.layer.pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        FixedChunkSizer,
        UnboundedMemory,
        NoRateLimit,
        NoPressure,
        NoRetries,
        NoCheckpoints,
        ReaderMetricsLive.layer,
        ResourceCleanupManagerLive.layer,
        ByteSourceLive.layer
      )
    ),
    Layer.merge(MemoryMonitorLive.layer())
  )

/** What the enhanced stack is built from. */
export interface EnhancedStackOptions {
  /** The process-wide memory budget in bytes (default 50 MiB). */
  readonly memoryLimit?: number
  /** The SQLite checkpoint database; checkpoints are kept in memory when absent. */
  readonly statePath?: string
  /** A cap on the rate of all reads together, in bytes per second. */
  readonly globalRate?: number
  /** How the memory monitor samples (tests inject a fake reading of process memory). */
  readonly memoryMonitor?: MemoryMonitorLive.MemoryMonitorOptions
  /** How the backpressure controller judges and recomputes the level. */
  readonly backpressure?: BackpressureControllerLive.BackpressureControllerOptions
}

const flag = (name: string) => Config.boolean(name).pipe(Config.withDefault(true), Config.nested("STREAMING_READER"))

/** Picks `on` when the feature flag `STREAMING_READER_<name>` is true (the default), else `off`. */
const featureFlag = <A, E1, R1, E2, R2>(
  name: string,
  on: Layer.Layer<A, E1, R1>,
  off: Layer.Layer<A, E2, R2>
): Layer.Layer<A, E1 | E2 | ConfigError.ConfigError, R1 | R2> =>
  Layer.unwrapEffect(Effect.map(flag(name), (enabled): Layer.Layer<A, E1 | E2, R1 | R2> => enabled ? on : off))

/** The enhanced parts around a given source and checkpoint store. */
const enhancedParts = <E1, R1, E2, R2>(
  options: EnhancedStackOptions,
  sources: Layer.Layer<ByteSource, E1, R1>,
  store: Layer.Layer<CheckpointStore, E2, R2>
) => {
  const monitor = MemoryMonitorLive.layer(options.memoryMonitor)
  const memory = featureFlag(
    "MEMORY_BUDGET",
    AdaptiveMemoryManagerLive.layer(options.memoryLimit === undefined ? {} : { limit: options.memoryLimit }),
    UnboundedMemory
  ).pipe(Layer.provideMerge(monitor))
  const pressure = featureFlag("BACKPRESSURE", BackpressureControllerLive.layer(options.backpressure), NoPressure).pipe(
    Layer.provideMerge(memory)
  )
  const parts = Layer.mergeAll(
    featureFlag("ADAPTIVE_CHUNKS", AdaptiveChunkSizerLive.layer, FixedChunkSizer),
    featureFlag(
      "RATE_LIMIT",
      AdaptiveRateLimiterLive.layer(options.globalRate === undefined ? {} : { globalRate: options.globalRate }),
      NoRateLimit
    ),
    featureFlag("RETRIES", StreamRecoveryManagerLive.layer, NoRetries),
    featureFlag("CHECKPOINTS", store, NoCheckpoints),
    ReaderMetricsLive.layer,
    sources
  ).pipe(Layer.provideMerge(pressure))
  const cleanup = ResourceCleanupManagerLive.emergencyOnCriticalPressure.pipe(
    Layer.provideMerge(ResourceCleanupManagerLive.layer),
    Layer.provide(pressure)
  )
  return StreamingReaderLive.layer.pipe(Layer.provideMerge(Layer.merge(parts, cleanup)))
}

/**
 * The enhanced reader: adaptive chunk sizes, one memory budget, backpressure, rate limiting,
 * retries with resume, and checkpoints (SQLite at `statePath`, else in memory). Each part can
 * be switched off with an environment variable (`STREAMING_READER_ADAPTIVE_CHUNKS`,
 * `_MEMORY_BUDGET`, `_BACKPRESSURE`, `_RATE_LIMIT`, `_RETRIES`, `_CHECKPOINTS` set to
 * `false`), falling back to its basic part.
 */
export const EnhancedStack = (
  options: EnhancedStackOptions = {}
): Layer.Layer<
  ReaderParts,
  CheckpointStoreError | ConfigError.ConfigError,
  FileSystem.FileSystem | HttpClient.HttpClient
> =>
  enhancedParts(
    options,
    ByteSourceLive.layer,
    options.statePath === undefined ? CheckpointStoreMemory.layer : CheckpointStoreSqlite.layer(options.statePath)
  )

/** A reading of process memory that never changes: the process's memory when it is first read. */
const steadyMemory = (): () => MemoryMonitorLive.MemoryReading => {
  let first: MemoryMonitorLive.MemoryReading | undefined
  return () => {
    if (first === undefined) {
      const usage = process.memoryUsage()
      first = { rss: usage.rss, heapUsed: usage.heapUsed, arrayBuffers: usage.arrayBuffers }
    }
    return first
  }
}

/**
 * The enhanced reader for tests: the given source (e.g. a fault-injecting one), an in-memory
 * checkpoint store, which it also offers for assertions, and a memory monitor that sees a steady
 * RSS (so `TestClock` jumps never turn the test process's own memory into growth) unless
 * `memoryMonitor` says otherwise.
 */
export const TestStack = (
  sources: Layer.Layer<ByteSource>,
  options: EnhancedStackOptions = {}
): Layer.Layer<ReaderParts, ConfigError.ConfigError> =>
  enhancedParts({ memoryMonitor: { read: steadyMemory() }, ...options }, sources, CheckpointStoreMemory.layer)
