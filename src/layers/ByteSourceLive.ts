/**
 * The live `ByteSource`: parses a source string and opens files, HTTP(S) objects, Node
 * `Readable`s and in-memory bytes.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { SourceInput } from "../services/ByteSource.js"
import { ByteSource, InvalidUrl, redactText, SourceSpec } from "../services/ByteSource.js"
import { openFile } from "./sources/FileSource.js"
import { makeHttpSource } from "./sources/HttpSource.js"
import { openBytes, openReadable } from "./sources/MemorySources.js"

/**
 * Reads a source string: `http:` and `https:` are URLs (also with a missing or single slash,
 * which URL parsing accepts), another `scheme://` is refused, anything else is a file path.
 */
export const parseSource = (input: SourceInput): Effect.Effect<SourceSpec, InvalidUrl> => {
  if (typeof input !== "string") return Effect.succeed(input)
  if (!/^https?:/i.test(input)) {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(input)
    if (scheme === null) return Effect.succeed(SourceSpec.File({ path: input }))
    const protocol = scheme[1]!.toLowerCase()
    return Effect.fail(
      new InvalidUrl({ input: redactText(input), reason: `unsupported scheme ${protocol}:, use http: or https:` })
    )
  }
  return Effect.try({
    try: () => SourceSpec.Http({ url: new URL(input) }),
    catch: () => new InvalidUrl({ input: redactText(input), reason: "not a valid URL" })
  }).pipe(
    Effect.filterOrFail(
      (spec) => spec.url.hostname !== "",
      () => new InvalidUrl({ input: redactText(input), reason: "no host" })
    )
  )
}

/**
 * `STREAMING_READER_TRACE_PROPAGATION=true` lets HTTP requests carry the trace context
 * (`traceparent`, `b3`) to the source's own origin; off by default, and never sent elsewhere.
 */
export const tracePropagationConfig: Config.Config<boolean> = Config.boolean("STREAMING_READER_TRACE_PROPAGATION").pipe(
  Config.withDefault(false)
)

/** Builds the live `ByteSource` from the platform's file system and HTTP client. */
export const make = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const client = yield* HttpClient.HttpClient
  // An unreadable value leaves propagation off: the safe side.
  const tracePropagation = yield* Effect.orElseSucceed(tracePropagationConfig, () => false)
  return ByteSource.of({
    open: Effect.fn("ByteSource.open")(function*(input: SourceInput) {
      const spec = yield* parseSource(input)
      return yield* SourceSpec.$match(spec, {
        File: ({ path }) => openFile(fs, path),
        Http: ({ url }) => Effect.succeed(makeHttpSource(client, url, { tracePropagation })),
        Readable: ({ name, stream }) => openReadable(name, stream),
        Bytes: ({ name, bytes }) => Effect.succeed(openBytes(name, bytes))
      })
    })
  })
})

/** The live `ByteSource`. */
export const layer: Layer.Layer<ByteSource, never, FileSystem.FileSystem | HttpClient.HttpClient> = Layer.effect(
  ByteSource,
  make
)
