/**
 * HttpSource: the HTTP(S) part of `ByteSource`. One ranged GET per attempt
 * (`Range: bytes=<offset>-`), its body sliced or joined into the sizes the caller pulls.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { Chunk, Clock, Effect, ExecutionStrategy, Exit, Option, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import {
  BadRedirect,
  HttpStatusError,
  InvalidUrl,
  RangeNotSupported,
  redactText,
  redactUrl,
  SourceChanged,
  SourceNotFound,
  TransientReadError
} from "../../services/ByteSource.js"
import type { SourceCursor, SourceError, SourceHandle, SourceIdentity } from "../../services/ByteSource.js"
import { rechunk } from "./rechunk.js"

/** Redirects followed per attempt; one more is a `BadRedirect`. */
export const maxRedirects = 5

/** How an HTTP source behaves beyond the URL. */
export interface HttpSourceOptions {
  /** Send the trace context (`traceparent`, `b3`) to the URL's own origin; never to another one. Off by default. */
  readonly tracePropagation?: boolean
}

const redirectStatuses: ReadonlySet<number> = new Set([301, 302, 303, 307, 308])

/** Opens an HTTP(S) URL as a seekable source read with one ranged GET per attempt. */
export const makeHttpSource = (
  client: HttpClient.HttpClient,
  url: URL,
  options: HttpSourceOptions = {}
): SourceHandle => {
  const source = redactUrl(url)
  // The platform's own client span records the full URL, query signatures included: it is
  // replaced by a span that names the redacted URL, and trace headers are added here or not at all.
  const scopedClient = HttpClient.withScope(client).pipe(
    HttpClient.withTracerPropagation(false),
    HttpClient.withTracerDisabledWhen(() => true)
  )
  const origin = url.origin
  const authorization = basicAuthorization(url)
  const requestUrl = withoutCredentials(url)
  const tracePropagation = options.tracePropagation === true

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

  // One request, in a span that names the redacted URL; the trace context goes only to the first
  // URL's origin. The span ends with no value (a response holds the full URL and the credentials).
  const send = (target: URL, headers: Readonly<Record<string, string>>, hopScope: Scope.Scope) =>
    Effect.suspend(() => {
      let response: HttpClientResponse.HttpClientResponse | undefined
      return Effect.useSpan(
        "HttpSource.request",
        { kind: "client", attributes: { "http.request.method": "GET", "url.full": redactUrl(target) } },
        (span) => {
          const sameOrigin = target.origin === origin
          const sent: Record<string, string> = { ...headers }
          if (authorization !== undefined && sameOrigin) sent["authorization"] = authorization
          if (tracePropagation && sameOrigin) Object.assign(sent, HttpTraceContext.toHeaders(span))
          return scopedClient.execute(HttpClientRequest.get(target.href, { headers: sent })).pipe(
            Scope.extend(hopScope),
            Effect.mapError(requestFailed),
            Effect.map((answer) => {
              response = answer
              span.attribute("http.response.status_code", answer.status)
            })
          )
        }
      ).pipe(Effect.map(() => response!))
    })

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
      const response = yield* send(target, headers, hopScope).pipe(
        Effect.onError(() => Scope.close(hopScope, Exit.void))
      )
      const location = response.headers["location"]
      if (!redirectStatuses.has(response.status) || location === undefined) return { response, hopScope }
      yield* Scope.close(hopScope, Exit.void)
      if (redirects >= maxRedirects) {
        return yield* new BadRedirect({ source, reason: `too many redirects (more than ${maxRedirects})` })
      }
      const next = parseRedirect(location, target)
      if (next === undefined) {
        return yield* new BadRedirect({
          source,
          reason: `unreadable Location ${JSON.stringify(shorten(redactText(location)))}`
        })
      }
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        return yield* new BadRedirect({
          source,
          reason: `redirect to a non-HTTP URL refused: ${shorten(redactUrl(next))}`
        })
      }
      return yield* execute(scope, withoutCredentials(next), headers, redirects + 1)
    })

  const readFrom = Effect.fn("HttpSource.readFrom")(function*(offset: number, expected?: SourceIdentity) {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      return yield* Effect.dieMessage(`HttpSource.readFrom: offset must be a non-negative integer, got ${offset}`)
    }
    const headers: Record<string, string> = {
      "range": `bytes=${offset}-`,
      "accept-encoding": "identity"
    }
    const ifRange = expected === undefined ? undefined : ifRangeValidator(expected)
    if (ifRange !== undefined) headers["if-range"] = ifRange

    const scope = yield* Effect.scope
    const { hopScope, response } = yield* execute(scope, requestUrl, headers, 0)
    return yield* interpret(source, response, hopScope, offset, expected, statusError).pipe(
      Effect.onError(() => Scope.close(hopScope, Exit.void))
    )
  })

  return source === url.href
    ? { source, seekable: true, canStall: true, readFrom }
    : { source, checkpointKey: checkpointKeyOf(source, url), seekable: true, canStall: true, readFrom }
}

/** The checkpoint key of a URL whose printable name hides something: that name and a short hash of the full URL. */
export const checkpointKeyOf = (redacted: string, url: URL): string =>
  `${redacted} #${createHash("sha256").update(url.href).digest("hex").slice(0, 16)}`

/**
 * The validator an `If-Range` may carry for this identity (RFC 9110 §13.1.5): its strong
 * entity tag; or, with no entity tag at all, a Last-Modified date that was strong; else none.
 */
export const ifRangeValidator = (identity: SourceIdentity): string | undefined => {
  if (identity.strongValidator === false) return undefined
  if (identity.etag !== undefined) return isStrongEtag(identity.etag) ? identity.etag : undefined
  return identity.lastModified
}

/** Whether an ETag is a strong entity tag: `"..."`, not `W/"..."` (nor anything malformed). */
const isStrongEtag = (etag: string): boolean => /^"[^"]*"$/.test(etag)

/**
 * Whether a Last-Modified is a strong validator (RFC 9110 §8.8.2.2): the same response's `Date`
 * is at least one second later, so a change within that second would have changed the date.
 */
const isStrongDate = (lastModified: string, date: string | undefined): boolean => {
  if (date === undefined) return false
  const modified = Date.parse(lastModified)
  const sent = Date.parse(date)
  return Number.isFinite(modified) && Number.isFinite(sent) && sent - modified >= 1000
}

const shorten = (text: string): string => text.length > 200 ? `${text.slice(0, 200)}…` : text

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
      // A server may send less than the rest (a capped range, or of an unknown total): its end is then no end.
      const rangeIsTheRest = range.total !== undefined && range.end + 1 === range.total
      const restOf = rangeIsTheRest ? undefined : range.total ?? "?"
      return makeCursor(source, identity, pull, hopScope, offset, offset, range.end + 1, restOf)
    }

    if (status >= 200 && status < 300) {
      const length = parseLength(headers["content-length"])
      const identity = length === undefined ? tags : { size: length, ...tags }
      if (length !== undefined && length < offset) yield* pastTheEnd(source, offset, length, expected, identity)
      const pull = yield* Stream.toPull(response.stream).pipe(Scope.extend(hopScope))
      return makeCursor(source, identity, pull, hopScope, 0, offset, length ?? Number.POSITIVE_INFINITY, undefined)
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
 * A cursor over one response body, living in `scope` (the answer's). `bodyStart` is the
 * absolute offset of the body's first byte, `offset` the first byte to deliver (bytes before it
 * are discarded: a server that ignored the range), `end` the exclusive absolute end (bytes past
 * it are dropped). `restOf` is set when `end` is not the end of the object (a shorter range): the
 * total, or `?` when unknown. Reaching `end` then fails transiently, so the read goes on with a
 * new request.
 */
const makeCursor = (
  source: string,
  identity: SourceIdentity,
  pullChunk: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<HttpClientError.ResponseError>>,
  scope: Scope.Scope,
  bodyStart: number,
  offset: number,
  end: number,
  restOf: number | "?" | undefined
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

  const atEnd: Effect.Effect<undefined, TransientReadError> = Effect.suspend(() => {
    bodyDone = true
    return restOf === undefined
      ? Effect.succeed(undefined)
      : fail(
        new TransientReadError({ source, reason: `the server sent a shorter range, up to byte ${end} of ${restOf}` })
      )
  })

  // The next usable slice of the body, `undefined` at its end; fails only with a transient error.
  const nextSlice: Effect.Effect<Uint8Array | undefined, TransientReadError> = Effect.suspend(() => {
    if (failure !== undefined) return Effect.fail(failure)
    while (queueIndex < queue.length) {
      const raw = queue[queueIndex++]!
      const chunkStart = bodyPosition
      if (chunkStart >= end) return atEnd
      bodyPosition += raw.byteLength
      const from = Math.max(0, offset - chunkStart)
      const to = Math.min(raw.byteLength, end - chunkStart)
      if (from < to) {
        if (bodyPosition >= end) bodyDone = true
        return Effect.succeed(new Uint8Array(raw.buffer, raw.byteOffset + from, to - from))
      }
    }
    if (bodyDone) return atEnd
    return Effect.matchEffect(pullChunk, {
      onFailure: Option.match({
        onNone: () =>
          Number.isFinite(end) && bodyPosition < end
            ? fail(new TransientReadError({ source, reason: `body ended early at byte ${bodyPosition} of ${end}` }))
            : atEnd,
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

  const take = rechunk(nextSlice, { scope })

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

/**
 * What a response says about the version: its ETag and Last-Modified, and `strongValidator:
 * false` unless a strong ETag, or a strong Last-Modified with no ETag at all, vouches for it.
 * Nothing that changes per response (the `Date` itself) is kept, so two answers compare equal.
 */
export const identityTags = (headers: Readonly<Record<string, string>>): SourceIdentity => {
  const etag = headers["etag"]
  const lastModified = headers["last-modified"]
  const strong = etag !== undefined
    ? isStrongEtag(etag)
    : lastModified !== undefined && isStrongDate(lastModified, headers["date"])
  return {
    ...(etag === undefined ? {} : { etag }),
    ...(lastModified === undefined ? {} : { lastModified }),
    ...(strong ? {} : { strongValidator: false })
  }
}

const parseRedirect = (location: string, base: URL): URL | undefined => {
  try {
    return new URL(location, base)
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
