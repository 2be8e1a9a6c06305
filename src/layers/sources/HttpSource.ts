/**
 * HttpSource: the HTTP(S) part of `ByteSource`. One ranged GET per attempt
 * (`Range: bytes=<offset>-`), redirects followed by the platform's `HttpClient.followRedirects`,
 * its body sliced or joined into the sizes the caller pulls.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import { Readable } from "node:stream"
import {
  BadRedirect,
  HttpStatusError,
  InvalidUrl,
  RangeNotSupported,
  redactText,
  redactUrl,
  SourceChanged,
  SourceNotFound,
  TlsFailure,
  TransientReadError
} from "../../services/ByteSource.js"
import type { SourceCursor, SourceError, SourceHandle, SourceIdentity } from "../../services/ByteSource.js"
import { networkReason, permanentTlsProblem, systemFailure } from "../SystemErrors.js"
import { parseContentLength, parseContentRange, parseUnsatisfiedRange, rangeBetween, rangeFrom } from "./HttpRanges.js"
import { readableRange } from "./readableRange.js"
import { rechunk } from "./rechunk.js"

/** Redirects followed per attempt; one more is a `BadRedirect`. */
export const maxRedirects = 5

/** Whether an HTTP status is worth another attempt: 408 Request Timeout, 429 Too Many Requests and every 5xx. */
export const isRetryableStatus = (status: number): boolean =>
  status === 408 || status === 429 || (status >= 500 && status <= 599)

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
        new HttpStatusError(
          retryAfterMs === undefined
            ? { source, status: response.status }
            : { source, status: response.status, retryAfterMs }
        )
      )
    })

  const requestFailed = (error: HttpClientError.HttpClientError): SourceError =>
    error._tag === "RequestError" && error.reason === "InvalidUrl"
      ? new InvalidUrl({ input: source, reason: "not a valid request URL" })
      : networkError(source, error.cause)

  // One request, in a span that names the redacted URL. Credentials (the URL's user information,
  // as Basic auth) and the trace context go only to the first URL's origin, so they are added
  // here, per hop, and never to the request `followRedirects` copies from hop to hop. The span
  // ends with no value (a response holds the full URL and the credentials).
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

  // The client of one attempt: `followRedirects` follows each 3xx with a Location and counts the
  // hops; each hop runs in its own child of the answer's scope, so a redirect answer is aborted
  // as soon as its headers are read. Three checks stay here, as `followRedirects` does not make
  // them: a 3xx that is no redirect (a 304, a 300) fails as its status; a Location that does not
  // parse (a defect there) or leads to another scheme (a request error there) is a typed
  // `BadRedirect`; and each hop goes to `target`, the exact URL its Location resolved to, because
  // `followRedirects` rebuilds that URL through `UrlParams`, which re-encodes the query
  // (`a=%20b&flag` becomes `a=+b&flag=`) and so would break a signed URL.
  const attemptClient = (): HttpClient.HttpClient.With<SourceError, Scope.Scope> => {
    let target = requestUrl
    const hop = (
      request: HttpClientRequest.HttpClientRequest
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, SourceError, Scope.Scope> =>
      Effect.gen(function*() {
        const hopScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        const response = yield* send(target, request.headers, hopScope).pipe(
          Effect.onError(() => Scope.close(hopScope, Exit.void))
        )
        const location = response.headers["location"]
        if (response.status < 300 || response.status >= 400 || location === undefined) return response
        yield* Scope.close(hopScope, Exit.void)
        if (!redirectStatuses.has(response.status)) return yield* statusError(response)
        target = yield* redirectTarget(source, location, target)
        return response
      })
    return HttpClient.followRedirects(
      HttpClient.makeWith<never, never, SourceError, Scope.Scope>(
        (request) => Effect.flatMap(request, hop),
        Effect.succeed
      ),
      maxRedirects
    )
  }

  const readFrom = Effect.fn("HttpSource.readFrom")(function*(offset: number, expected?: SourceIdentity, end?: number) {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      return yield* Effect.dieMessage(`HttpSource.readFrom: offset must be a non-negative integer, got ${offset}`)
    }
    if (end !== undefined && !(Number.isSafeInteger(end) && end > offset)) {
      return yield* Effect.dieMessage(`HttpSource.readFrom: end must be an integer past ${offset}, got ${end}`)
    }
    const headers: Record<string, string> = {
      "range": end === undefined ? rangeFrom(offset) : rangeBetween(offset, end),
      "accept-encoding": "identity"
    }
    const ifRange = expected === undefined ? undefined : ifRangeValidator(expected)
    if (ifRange !== undefined) {
      headers["if-range"] = ifRange
      // A bounded range is one segment of several: another version is refused outright (412).
      if (end !== undefined) headers["if-match"] = ifRange
    }

    const answerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    return yield* Effect.gen(function*() {
      const response = yield* attemptClient().execute(HttpClientRequest.get(requestUrl.href, { headers })).pipe(
        Scope.extend(answerScope)
      )
      // Every redirect a hop let through is followed, unless `followRedirects` ran out of hops.
      if (redirectStatuses.has(response.status) && response.headers["location"] !== undefined) {
        return yield* new BadRedirect({ source, reason: `too many redirects (more than ${maxRedirects})` })
      }
      return yield* interpret(source, response, answerScope, offset, end, expected, statusError)
    }).pipe(Effect.onError(() => Scope.close(answerScope, Exit.void)))
  })

  const connectionHost = url.host
  return source === url.href
    ? { source, seekable: true, canStall: true, connectionHost, readFrom }
    : { source, checkpointKey: checkpointKeyOf(source, url), seekable: true, canStall: true, connectionHost, readFrom }
}

// The URL a redirect leads to, refused as a `BadRedirect` when it is unreadable or not http(s).
const redirectTarget = (source: string, location: string, base: URL): Effect.Effect<URL, BadRedirect> => {
  const next = location === "" ? undefined : parseRedirect(location, base)
  if (next === undefined) {
    return Effect.fail(
      new BadRedirect({ source, reason: `unreadable Location ${JSON.stringify(shorten(redactText(location)))}` })
    )
  }
  if (next.protocol !== "http:" && next.protocol !== "https:") {
    return Effect.fail(
      new BadRedirect({ source, reason: `redirect to a non-HTTP URL refused: ${shorten(redactUrl(next))}` })
    )
  }
  return Effect.succeed(withoutCredentials(next))
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
  wantedEnd: number | undefined,
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
      // A server may send less than asked (a capped range, or of an unknown total): its end is then no end.
      const rangeIsTheRest = range.total !== undefined && range.end + 1 === range.total
      const rangeIsAsked = wantedEnd !== undefined && range.end + 1 === wantedEnd
      const restOf = rangeIsTheRest || rangeIsAsked ? undefined : range.total ?? "?"
      const ranged = range.total !== undefined
      return yield* makeCursor(source, identity, response, hopScope, offset, offset, range.end + 1, restOf, ranged)
    }

    if (status >= 200 && status < 300) {
      const length = parseContentLength(headers["content-length"])
      const identity = length === undefined ? tags : { size: length, ...tags }
      if (length !== undefined && length < offset) yield* pastTheEnd(source, offset, length, expected, identity)
      const end = length ?? Number.POSITIVE_INFINITY
      return yield* makeCursor(source, identity, response, hopScope, 0, offset, end, undefined, false)
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
 * The Node `Readable` a response of the platform's Node clients reads its body from: the
 * undici client keeps undici's answer as the response's `source` (its `body` is the stream),
 * the `node:http` client the `IncomingMessage` itself. `undefined` for any other client.
 */
export const nodeBodyOf = (response: HttpClientResponse.HttpClientResponse): Readable | undefined => {
  const wrapped: unknown = (response as { readonly source?: unknown }).source
  if (wrapped instanceof Readable) return wrapped
  const body: unknown = typeof wrapped === "object" && wrapped !== null
    ? (wrapped as { readonly body?: unknown }).body
    : undefined
  return body instanceof Readable ? body : undefined
}

/**
 * A cursor over one response body, living in `scope` (the answer's). `bodyStart` is the
 * absolute offset of the body's first byte, `offset` the first byte to deliver (bytes before it
 * are discarded: a server that ignored the range), `end` the exclusive absolute end (bytes past
 * it are dropped). `restOf` is set when `end` is not the end of the object (a shorter range): the
 * total, or `?` when unknown. Reaching `end` then fails transiently, so the read goes on with a
 * new request.
 *
 * The body of the platform's Node clients is read from its stream directly (`readableRange`);
 * that of any other client through the response's `Stream`, re-sliced by `rechunk`.
 */
const makeCursor = (
  source: string,
  identity: SourceIdentity,
  response: HttpClientResponse.HttpClientResponse,
  scope: Scope.Scope,
  bodyStart: number,
  offset: number,
  end: number,
  restOf: number | "?" | undefined,
  ranged: boolean
): Effect.Effect<SourceCursor> =>
  Effect.gen(function*() {
    // What the end of the body at absolute `position` means: too early, a shorter range, or the end.
    const endAt = (position: number): TransientReadError | undefined => {
      if (Number.isFinite(end) && position < end) {
        return new TransientReadError({ source, reason: `body ended early at byte ${position} of ${end}` })
      }
      return restOf === undefined
        ? undefined
        : new TransientReadError({ source, reason: `the server sent a shorter range, up to byte ${end} of ${restOf}` })
    }
    const lost = (cause: unknown): TransientReadError => {
      const error = networkError(source, cause)
      return error._tag === "TransientReadError" ? error : new TransientReadError({ source, reason: "connection lost" })
    }
    const readable = nodeBodyOf(response)
    const take = readable === undefined
      ? yield* streamedBody(response, scope, bodyStart, offset, end, endAt, lost)
      : yield* readableRange(readable, scope, {
        skip: Math.max(0, offset - bodyStart),
        limit: end - Math.max(offset, bodyStart),
        onEnd: (received) => endAt(bodyStart + received),
        onError: lost
      })
    return {
      identity,
      ranged,
      pull: (maxBytes, into) => take(Math.max(1, Math.floor(maxBytes)), into)
    }
  })

// The body of a response read through its `Stream`: its pieces sliced to the range, then
// re-sliced to the sizes pulled by `rechunk`.
const streamedBody = (
  response: HttpClientResponse.HttpClientResponse,
  scope: Scope.Scope,
  bodyStart: number,
  offset: number,
  end: number,
  endAt: (position: number) => TransientReadError | undefined,
  lost: (cause: unknown) => TransientReadError
) =>
  Effect.gen(function*() {
    const pullChunk = yield* Stream.toPull(response.stream).pipe(Scope.extend(scope))
    let bodyPosition = bodyStart // absolute offset of the next body byte not yet taken from the stream
    let queue: ReadonlyArray<Uint8Array> = []
    let queueIndex = 0
    let bodyDone = false
    let failure: TransientReadError | undefined

    const finish = (error: TransientReadError | undefined): Effect.Effect<undefined, TransientReadError> => {
      bodyDone = true
      failure = error
      return error === undefined ? Effect.succeed(undefined) : Effect.fail(error)
    }

    // The next usable slice of the body, `undefined` at its end; fails only with a transient error.
    const nextSlice: Effect.Effect<Uint8Array | undefined, TransientReadError> = Effect.suspend(() => {
      if (failure !== undefined) return Effect.fail(failure)
      while (queueIndex < queue.length) {
        const raw = queue[queueIndex++]!
        const chunkStart = bodyPosition
        if (chunkStart >= end) return finish(endAt(end))
        bodyPosition += raw.byteLength
        const from = Math.max(0, offset - chunkStart)
        const to = Math.min(raw.byteLength, end - chunkStart)
        if (from < to) {
          if (bodyPosition >= end) bodyDone = true
          return Effect.succeed(new Uint8Array(raw.buffer, raw.byteOffset + from, to - from))
        }
      }
      if (bodyDone) return finish(endAt(Math.min(bodyPosition, end)))
      return Effect.matchEffect(pullChunk, {
        onFailure: Option.match({
          onNone: () => finish(endAt(bodyPosition)),
          onSome: (error) => finish(lost(error.cause))
        }),
        onSuccess: (chunk) => {
          queue = Chunk.toReadonlyArray(chunk)
          queueIndex = 0
          return nextSlice
        }
      })
    })

    return rechunk(nextSlice, { scope })
  })

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

// A network failure as a typed error: a host that does not exist is not found, a TLS connection
// that cannot be trusted or spoken is a TLS failure, anything else is worth another attempt; its
// reason is short and credential-free, never the raw message.
const networkError = (source: string, cause: unknown): TransientReadError | SourceNotFound | TlsFailure => {
  if (systemFailure(cause)?.kind === "NotFound") return new SourceNotFound({ source })
  const tls = permanentTlsProblem(cause)
  return tls === undefined
    ? new TransientReadError({ source, reason: networkReason(cause) })
    : new TlsFailure({ source, reason: tls })
}
