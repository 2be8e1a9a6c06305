/**
 * The Promise API: the reader for code that is not written with Effect. A reader owns one
 * runtime (a stack and the Node platform); reads are async iterables, Node `Readable`s or web
 * `ReadableStream`s, copies are promises, and every failure is the typed error instance itself.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as ConfigError from "effect/ConfigError"
import type { Readable } from "node:stream"
import { BasicStack, EnhancedStack, PlatformLive } from "../layers/Stacks.js"
import type { EnhancedStackOptions, ReaderServices } from "../layers/Stacks.js"
import { copyToFile } from "../layers/FileCopy.js"
import type { CopyRequest, CopySummary } from "../layers/FileCopy.js"
import type { SourceInput } from "../services/ByteSource.js"
import type { CheckpointStoreError } from "../services/CheckpointStore.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { StreamingReader } from "../services/StreamingReader.js"
import type { ReadError } from "../services/StreamingReader.js"
import { toReadable, toWebStream } from "./NodeStreams.js"

/** The reader was closed before or while the operation ran. */
export class ReaderClosed extends Schema.TaggedError<ReaderClosed>()("ReaderClosed", {}) {
  override get message() {
    return "the reader is closed"
  }
}

/** How a reader is built. */
export interface CreateReaderOptions {
  /** `enhanced` (default): adaptive chunks, memory budget, retries, checkpoints; `basic`: the plain reader. */
  readonly stack?: "enhanced" | "basic"
  /** The budget of bytes buffered by all reads of this reader (enhanced stack; default 50 MiB). */
  readonly memoryLimit?: number
  /** The SQLite checkpoint database (enhanced stack); checkpoints are kept in memory when absent. */
  readonly statePath?: string
}

/** How a copy to a file runs: the read options plus what to check and how to write. */
export type ReadToFileOptions = ReadOptionsInput & {
  /** Compute the sha256 of the output for the summary (default true). */
  readonly hash?: boolean
  /** Fail with `IntegrityMismatch` unless the output has this sha256 (hex). */
  readonly expectSha256?: string
  /** Flush the output to disk (fsync) before each checkpoint and at the end. */
  readonly durable?: boolean
}

/** Buffering of a `Readable` or web stream made from a read. */
export interface StreamOptions {
  /** Bytes held ahead of the consumer before the read pauses (default 64 KiB). */
  readonly highWaterMark?: number
}

/** One source's bytes, consumed as an async iterable, a Node `Readable` or a web stream; each use is its own read. */
export interface ReadResult extends AsyncIterable<Uint8Array> {
  /** The bytes as a Node `Readable`; `destroy()` releases the source. */
  readonly readable: (options?: StreamOptions) => Readable
  /** The bytes as a WHATWG `ReadableStream`; `cancel()` releases the source. */
  readonly webStream: (options?: StreamOptions) => ReadableStream<Uint8Array>
}

/** A reader for code that is not written with Effect. */
export interface Reader {
  /** The source's bytes; nothing is opened until the result is consumed. */
  readonly read: (source: SourceInput, options?: ReadOptionsInput) => ReadResult
  /** Copies a source (path or URL) into a file, resuming from its checkpoint; resolves with the summary. */
  readonly readToFile: (source: string, out: string, options?: ReadToFileOptions) => Promise<CopySummary>
  /** Ends the reads under way (they fail with `ReaderClosed`) and releases the runtime. */
  readonly close: () => Promise<void>
}

/** The failures building a reader's stack can end with. */
export type StackError = CheckpointStoreError | ConfigError.ConfigError

/** Every failure a read through this API can end with. */
export type ReadFailure = ReadError | StackError | ReaderClosed

const stackLayer = (options: CreateReaderOptions): Layer.Layer<ReaderServices, StackError> => {
  if (options.stack === "basic") return BasicStack.pipe(Layer.provide(PlatformLive))
  const stackOptions: EnhancedStackOptions = {
    ...(options.memoryLimit === undefined ? {} : { memoryLimit: options.memoryLimit }),
    ...(options.statePath === undefined ? {} : { statePath: options.statePath })
  }
  return EnhancedStack(stackOptions).pipe(Layer.provide(PlatformLive))
}

/** The success of an exit, or its failure squashed to the typed error instance (never a wrapper). */
const settle = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}

/** Makes a reader on its own runtime; call `close()` when done with it. */
export const createReader = (options: CreateReaderOptions = {}): Reader => {
  const runtime = ManagedRuntime.make(stackLayer(options))
  const closing = Deferred.unsafeMake<never, ReaderClosed>(FiberId.none)
  const running = new Set<Promise<unknown>>()
  let closed: Promise<void> | undefined

  const stream = (source: SourceInput, readOptions: ReadOptionsInput): Stream.Stream<Uint8Array, ReadFailure> =>
    Stream.unwrap(
      Effect.suspend((): Effect.Effect<Stream.Stream<Uint8Array, ReadError>, ReadFailure> =>
        closed !== undefined
          ? Effect.fail(new ReaderClosed())
          : Effect.map(
            runtime.runtimeEffect,
            (rt) =>
              Context.get(rt.context, StreamingReader).read(source, {
                acknowledge: "on-pull",
                ...readOptions,
                reuseBuffers: false
              })
          )
      )
    ).pipe(Stream.interruptWhen(Deferred.await(closing)))

  const read = (source: SourceInput, readOptions: ReadOptionsInput = {}): ReadResult => ({
    [Symbol.asyncIterator]: () => Stream.toAsyncIterable(stream(source, readOptions))[Symbol.asyncIterator](),
    readable: (streamOptions = {}) => toReadable(stream(source, readOptions), streamOptions),
    webStream: (streamOptions = {}) => toWebStream(stream(source, readOptions), streamOptions)
  })

  const readToFile = (source: string, out: string, copyOptions: ReadToFileOptions = {}): Promise<CopySummary> => {
    if (closed !== undefined) return Promise.reject(new ReaderClosed())
    const { durable, expectSha256, hash, ...rest } = copyOptions
    const request: CopyRequest = {
      source,
      out,
      options: rest,
      hash: hash ?? true,
      ...(expectSha256 === undefined ? {} : { expectSha256 }),
      ...(durable === undefined ? {} : { durable })
    }
    const copy = runtime.runPromiseExit(copyToFile(request).pipe(Effect.raceFirst(Deferred.await(closing))))
    running.add(copy)
    void copy.finally(() => running.delete(copy))
    return copy.then(settle)
  }

  const close = (): Promise<void> => {
    if (closed === undefined) {
      Deferred.unsafeDone(closing, Exit.fail(new ReaderClosed()))
      closed = Promise.allSettled(running).then(() => runtime.dispose())
    }
    return closed
  }

  return { read, readToFile, close }
}

/** Copies a source (path or URL) into a file with a reader made for it, then closes that reader. */
export const readToFile = async (
  source: string,
  out: string,
  options: ReadToFileOptions & CreateReaderOptions = {}
): Promise<CopySummary> => {
  const { stack, statePath, ...copyOptions } = options
  const reader = createReader({
    ...(stack === undefined ? {} : { stack }),
    ...(statePath === undefined ? {} : { statePath }),
    ...(options.memoryLimit === undefined ? {} : { memoryLimit: options.memoryLimit })
  })
  try {
    return await reader.readToFile(source, out, copyOptions)
  } finally {
    await reader.close()
  }
}
