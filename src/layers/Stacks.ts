/**
 * The compositions: the platform (Node file system and HTTP client), the basic stack (plain
 * parts) and the enhanced stack (adaptive parts, each behind a feature flag).
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Layer } from "effect"
import type { ByteSource } from "../services/ByteSource.js"
import type { MemoryMonitor } from "../services/MemoryMonitor.js"
import type { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { StreamingReader } from "../services/StreamingReader.js"
import { FixedChunkSizer, NoCheckpoints, NoPressure, NoRateLimit, NoRetries, UnboundedMemory } from "./Basic.js"
import * as ByteSourceLive from "./ByteSourceLive.js"
import * as MemoryMonitorLive from "./MemoryMonitorLive.js"
import * as ReaderMetricsLive from "./ReaderMetricsLive.js"
import * as StreamingReaderLive from "./StreamingReaderLive.js"

/** Node's file system, paths, command executor and undici HTTP client. */
export const PlatformLive: Layer.Layer<NodeContext.NodeContext | HttpClient.HttpClient> = Layer.mergeAll(
  NodeContext.layer,
  NodeHttpClient.layerUndici
)

/** What every stack offers its programs. */
export type ReaderServices = StreamingReader | ReaderMetrics | MemoryMonitor | ByteSource

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
        ByteSourceLive.layer
      )
    ),
    Layer.merge(MemoryMonitorLive.layer())
  )
