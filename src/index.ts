/**
 * streaming-reader: read large byte sources as one typed-error Effect `Stream`.
 */
export * from "./services/AdaptiveChunkSizer.js"
export * from "./services/AdaptiveMemoryManager.js"
export * from "./services/AdaptiveRateLimiter.js"
export * from "./services/BackpressureController.js"
export * from "./services/ByteSource.js"
export * from "./services/CheckpointStore.js"
export * from "./services/MemoryMonitor.js"
export * from "./services/ReaderMetrics.js"
export * from "./services/ReadOptions.js"
export * from "./services/JobQueue.js"
export * from "./services/ResourceCleanupManager.js"
export * from "./services/StreamingReader.js"
export * from "./services/StreamRecoveryManager.js"
export * from "./layers/Stacks.js"
export * as FileCopy from "./layers/FileCopy.js"
/** A testing utility: a source in memory that fails on a plan (see its module). */
export * as FaultInjectingSource from "./layers/FaultInjectingSource.js"
export * from "./adapters/NodeStreams.js"
export * from "./adapters/PromiseApi.js"
