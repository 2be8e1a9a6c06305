/**
 * HttpSource: the HTTP(S) part of `ByteSource`. One ranged GET per attempt
 * (`Range: bytes=<offset>-`), its body sliced or joined into the sizes the caller pulls.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Chunk, Clock, Effect, ExecutionStrategy, Exit, Option, Scope, Stream } from "effect"
import {
  HttpStatusError,
  InvalidUrl,
  RangeNotSupported,
  redactUrl,
  SourceChanged,
  SourceNotFound,
  TransientReadError
} from "../../services/ByteSource.js"
import type { SourceCursor, SourceError, SourceHandle, SourceIdentity } from "../../services/ByteSource.js"
import { rechunk } from "./rechunk.js"

/** Redirects followed per attempt before the last 3xx answer becomes an `HttpStatusError`. */
export const maxRedirects = 5

/** Opens an HTTP(S) URL as a seekable source read with one ranged GET per attempt. */
export const makeHttpSource = (client: HttpClient.HttpClient, url: URL): SourceHandle => {
  const source = redactUrl(url)
  const scopedClient = HttpClient.withScope(client)
  const origin = url.origin
  const authorization = basicAuthorization(url)
  const requestUrl = withoutCredentials(url)

  const statusError = (response: HttpClientResponse.HttpClientResponse) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const retryAfterMs = parseRetryAfter(response.headers["retry-after"], now)
      return Effect.fail(
        new HttpStatusError(retryAfterMs === undefined
          ? { source, status: response.status }
          : { source, status: response.status, retryAfterMs })
      )
    })

  const requestFailed = (error: HttpClientError.HttpClientError): SourceError =>
    error._tag === "RequestError" && error.reason === "InvalidUrl"
      ? new InvalidUrl({ input: source, reason: "not a valid request URL" })
      : networkError(source, error.cause)

  // One hop of the redirect chain in its own child scope, so a redirect answer is aborted
  // as soon as the next hop starts, while the final answer lives as long as the attempt.
  const execute = (
    scope: Scope.Scope,
    target: URL,
    headers: Readonly<Record<string, string>>,
    redirects: number
  ): Effect.Effect<
    { readonly response: HttpClientResponse.HttpClientResponse; readonly hopScope: Scope.CloseableScope },
    SourceError
  > =>
    Effect.gen(function*() {
      const hopScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      const sameOrigin = target.origin === origin
      const request = HttpClientRequest.get(target.href, {
        headers: sameOrigin || authorization === undefined
          ? headers
          : Object.fromEntries(Object.entries(headers).filter(([name]) => name !== "authorization"))
      })
      const response = yield* scopedClient.execute(request).pipe(
        Scope.extend(hopScope),
        Effect.mapError(requestFailed),
        Effect.onError(() => Scope.close(hopScope, Exit.void))
      )
      const location = response.headers["location"]
      if (response.status < 300 || response.status >= 400 || location === undefined || redirects >= maxRedirects) {
        return { response, hopScope }
      }
      yield* Scope.close(hopScope, Exit.void)
      const next = resolveRedirect(location, target)
      if (next === undefined) return yield* statusError(response)
      return yield* execute(scope, next, headers, redirects + 1)
    })

  const readFrom = Effect.fn("HttpSource.readFrom")(function*(offset: number, expected?: SourceIdentity) {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      return yield* Effect.dieMessage(`HttpSource.readFrom: offset must be a non-negative integer, got ${offset}`)
    }
    const headers: Record<string, string> = {
      "range": `bytes=${offset}-`,
      "accept-encoding": "identity"
    }
    if (authorization !== undefined) headers["authorization"] = authorization
    if (expected?.etag !== undefined && !expected.etag.startsWith("W/")) headers["if-range"] = expected.etag

    const scope = yield* Effect.scope
    const { hopScope, response } = yield* execute(scope, requestUrl, headers, 0)
    return yield* interpret(source, response, hopScope, offset, expected, statusError).pipe(
      Effect.onError(() => Scope.close(hopScope, Exit.void))
    )
  })

  return { source, seekable: true, canStall: true, readFrom }
}

const interpret = (
  source: string,
  response: HttpClientResponse.HttpClientResponse,
  hopScope: Scope.CloseableScope,
  offset: number,
  expected: SourceIdentity | undefined,
  statusError: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<never, HttpStatusError>
): Effect.Effect<SourceCursor, SourceError> =>
  Effect.gen(function*() {
    const status = response.status
    const headers = response.headers
    const tags = identityTags(headers)

    if (status === 206) {
      const range = parseContentRange(headers["content-range"])
      if (range === undefined) {
        return yield* new RangeNotSupported({
          source,
          reason: `unparseable Content-Range ${JSON.stringify(headers["content-range"] ?? null)}`
        })
      }
      if (range.start !== offset) {
        return yield* new RangeNotSupported({
          source,
          reason: `asked for bytes from ${offset}, got Content-Range ${headers["content-range"]}`
        })
      }
      const identity = range.total === undefined ? tags : { size: range.total, ...tags }
      const pull = yield* Stream.toPull(response.stream).pipe(Scope.extend(hopScope))
      return makeCursor(source, identity, pull, offset, offset, range.end + 1)
    }

    if (status >= 200 && status < 300) {
      const length = parseLength(headers["content-length"])
      const identity = length === undefined ? tags : { size: length, ...tags }
      if (length !== undefined && length < offset) yield* pastTheEnd(source, offset, length, expected, identity)
      const pull = yield* Stream.toPull(response.stream).pipe(Scope.extend(hopScope))
      return makeCursor(source, identity, pull, 0, offset, length ?? Number.POSITIVE_INFINITY)
    }

    if (status === 416) {
      const total = parseUnsatisfiedRange(headers["content-range"])
      if (total === offset || (total === undefined && expected?.size === offset)) {
        yield* Scope.close(hopScope, Exit.void)
        const size = total ?? offset
        return makeEndCursor({ size, ...tags })
      }
      if (total !== undefined && total < offset) {
        yield* pastTheEnd(source, offset, total, expected, { size: total, ...tags })
      }
      return yield* statusError(response)
    }

    if (status === 412) {
      return yield* new SourceChanged({ source, expected: expected ?? {}, actual: tags })
    }

    return yield* statusError(response)
  })

// The offset lies past the end the server reports: the source shrank since the offset was taken.
const pastTheEnd = (
  source: string,
  offset: number,
  size: number,
  expected: SourceIdentity | undefined,
  actual: SourceIdentity
): Effect.Effect<void, SourceError> =>
  expected !== undefined && expected.size !== size
    ? Effect.fail(new SourceChanged({ source, expected, actual }))
    : Effect.fail(new RangeNotSupported({ source, reason: `offset ${offset} is past the end (size ${size})` }))

const makeEndCursor = (identity: SourceIdentity): SourceCursor => ({
  identity,
  pull: () => Effect.succeed(new Uint8Array(0))
})

/**
 * A cursor over one response body. `bodyStart` is the absolute offset of the body's first
 * byte, `offset` the first byte to deliver (bytes before it are discarded: a server that
 * ignored the range), `end` the exclusive absolute end (bytes past it are dropped).
 */
const makeCursor = (
  source: string,
  identity: SourceIdentity,
  pullChunk: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<HttpClientError.ResponseError>>,
  bodyStart: number,
  offset: number,
  end: number
): SourceCursor => {
  let bodyPosition = bodyStart // absolute offset of the next body byte not yet taken from the stream
  let queue: ReadonlyArray<Uint8Array> = []
  let queueIndex = 0
  let bodyDone = false
  let failure: TransientReadError | undefined

  const fail = (error: TransientReadError) => {
    bodyDone = true
    failure = error
    return Effect.fail(error)
  }

  // The next usable slice of the body, `undefined` at its end; fails only with a transient error.
  const nextSlice: Effect.Effect<Uint8Array | undefined, TransientReadError> = Effect.suspend(() => {
    if (failure !== undefined) return Effect.fail(failure)
    while (queueIndex < queue.length) {
      const raw = queue[queueIndex++]!
      const chunkStart = bodyPosition
      if (chunkStart >= end) {
        bodyDone = true
        return Effect.succeed(undefined)
      }
      bodyPosition += raw.byteLength
      const from = Math.max(0, offset - chunkStart)
      const to = Math.min(raw.byteLength, end - chunkStart)
      if (from < to) {
        if (bodyPosition >= end) bodyDone = true
        return Effect.succeed(new Uint8Array(raw.buffer, raw.byteOffset + from, to - from))
      }
    }
    if (bodyDone) return Effect.succeed(undefined)
    return Effect.matchEffect(pullChunk, {
      onFailure: Option.match({
        onNone: () =>
          Number.isFinite(end) && bodyPosition < end
            ? fail(new TransientReadError({ source, reason: `body ended early at byte ${bodyPosition} of ${end}` }))
            : Effect.sync(() => {
              bodyDone = true
              return undefined
            }),
        onSome: (error) => {
          const cause = networkError(source, error.cause)
          return fail(
            cause._tag === "TransientReadError" ? cause : new TransientReadError({ source, reason: "connection lost" })
          )
        }
      }),
      onSuccess: (chunk) => {
        queue = Chunk.toReadonlyArray(chunk)
        queueIndex = 0
        return nextSlice
      }
    })
  })

  const take = rechunk(nextSlice)

  return {
    identity,
    pull: (maxBytes, into) => take(Math.max(1, Math.floor(maxBytes)), into)
  }
}

/** `Content-Range: bytes a-b/total` (total may be `*`); `undefined` when it is anything else. */
export const parseContentRange = (
  header: string | undefined
): { readonly start: number; readonly end: number; readonly total: number | undefined } | undefined => {
  if (header === undefined) return undefined
  const match = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(header.trim())
  if (match === null) return undefined
  const start = Number(match[1])
  const end = Number(match[2])
  const total = match[3] === "*" ? undefined : Number(match[3])
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined
  if (total !== undefined && (!Number.isSafeInteger(total) || end >= total)) return undefined
  return { start, end, total }
}

const parseUnsatisfiedRange = (header: string | undefined): number | undefined => {
  if (header === undefined) return undefined
  const match = /^bytes\s+\*\/(\d+)$/i.exec(header.trim())
  return match === null ? undefined : parseLength(match[1])
}

const parseLength = (value: string | undefined): number | undefined => {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined
  const n = Number(value.trim())
  return Number.isSafeInteger(n) ? n : undefined
}

/** `Retry-After` (delta-seconds or an HTTP-date) in milliseconds from `now`; `undefined` when absent or unreadable. */
export const parseRetryAfter = (value: string | undefined, now: number): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const identityTags = (headers: Readonly<Record<string, string>>): SourceIdentity => {
  const etag = headers["etag"]
  const lastModified = headers["last-modified"]
  return {
    ...(etag === undefined ? {} : { etag }),
    ...(lastModified === undefined ? {} : { lastModified })
  }
}

const resolveRedirect = (location: string, base: URL): URL | undefined => {
  try {
    const next = new URL(location, base)
    return next.protocol === "http:" || next.protocol === "https:" ? withoutCredentials(next) : undefined
  } catch {
    return undefined
  }
}

const withoutCredentials = (url: URL): URL => {
  const copy = new URL(url.href)
  copy.username = ""
  copy.password = ""
  copy.hash = ""
  return copy
}

const basicAuthorization = (url: URL): string | undefined => {
  if (url.username === "" && url.password === "") return undefined
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part)
    } catch {
      return part
    }
  }
  const pair = `${decode(url.username)}:${decode(url.password)}`
  return `Basic ${Buffer.from(pair, "utf8").toString("base64")}`
}

const reasons: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ECONNABORTED: "connection aborted",
  EPIPE: "connection closed",
  UND_ERR_SOCKET: "connection closed",
  UND_ERR_CLOSED: "connection closed",
  UND_ERR_ABORTED: "request aborted",
  ABORT_ERR: "request aborted",
  ETIMEDOUT: "timed out",
  UND_ERR_CONNECT_TIMEOUT: "connect timed out",
  UND_ERR_HEADERS_TIMEOUT: "timed out waiting for headers",
  UND_ERR_BODY_TIMEOUT: "timed out waiting for the body",
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: "body length differs from Content-Length",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENETDOWN: "network down",
  EAI_AGAIN: "DNS lookup failed"
}

// The first `code` in an error's cause chain (and an AggregateError's errors).
const errorCode = (error: unknown, depth = 0): string | undefined => {
  if (typeof error !== "object" || error === null || depth > 5) return undefined
  const code = (error as { readonly code?: unknown }).code
  if (typeof code === "string" && code !== "") return code
  const errors = (error as { readonly errors?: unknown }).errors
  if (Array.isArray(errors)) {
    for (const inner of errors) {
      const found = errorCode(inner, depth + 1)
      if (found !== undefined) return found
    }
  }
  return errorCode((error as { readonly cause?: unknown }).cause, depth + 1)
}

// A short, credential-free reason for a network failure; never the raw message.
const networkError = (source: string, cause: unknown): TransientReadError | SourceNotFound => {
  const code = errorCode(cause)
  if (code === "ENOTFOUND") return new SourceNotFound({ source })
  const name = typeof cause === "object" && cause !== null && "name" in cause ? String(cause.name) : "unknown"
  return new TransientReadError({ source, reason: describeFailure(code, name) })
}

const describeFailure = (code: string | undefined, name: string): string => {
  if (code !== undefined && reasons[code] !== undefined) return reasons[code]
  if (name === "HTTPParserError" || code?.startsWith("HPE_")) return "invalid HTTP response"
  if (name === "AbortError") return "request aborted"
  if (code?.startsWith("ERR_TLS") || code?.includes("CERT")) return `TLS failure (${code})`
  return `network error (${code ?? name})`
}
