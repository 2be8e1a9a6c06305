/**
 * ByteSource: opens a source (file, HTTP(S) object, Node `Readable`, bytes) and reads it
 * from an offset in chunks whose size the caller sets per pull.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Schema from "effect/Schema"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Readable } from "node:stream"

/** What to read: a local file, an HTTP(S) URL, a Node `Readable` or bytes in memory. */
export type SourceSpec = Data.TaggedEnum<{
  File: { readonly path: string }
  Http: { readonly url: URL }
  Readable: { readonly name: string; readonly stream: Readable }
  Bytes: { readonly name: string; readonly bytes: Uint8Array }
}>

/** Constructors and matchers for `SourceSpec`. */
export const SourceSpec = Data.taggedEnum<SourceSpec>()

/** A source as callers give it: a path or URL string, or a `SourceSpec`. */
export type SourceInput = string | SourceSpec

/**
 * Query (and fragment) parameters whose values are credentials: presigned-URL signatures
 * (S3, GCS, CloudFront, Azure SAS), OAuth tokens, API keys and passwords. Lower case.
 * This is the one place that knows what a credential in a URL looks like: every URL that is
 * printed, stored, measured or traced goes through `redactUrl`, `redactText` or `redactUrlText`.
 */
const secretParameters: ReadonlySet<string> = new Set([
  "x-amz-signature",
  "x-amz-credential",
  "x-amz-security-token",
  "x-goog-signature",
  "x-goog-credential",
  "x-goog-security-token",
  "sig",
  "signature",
  "policy",
  "key-pair-id",
  "token",
  "access_token",
  "id_token",
  "refresh_token",
  "session_token",
  "security_token",
  "private_token",
  "code",
  "api_key",
  "api-key",
  "apikey",
  "x-api-key",
  "key",
  "password",
  "passwd",
  "pwd",
  "secret",
  "client_secret",
  "auth"
])

const decodeName = (raw: string): string => {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " ")).toLowerCase()
  } catch {
    return raw.toLowerCase()
  }
}

// Whether a parameter name (as written, percent-encoded or not, in any case) names a credential.
const isSecretParameter = (name: string): boolean => secretParameters.has(decodeName(name))

// `a=1&sig=2` with every credential value replaced by `***`, the rest kept byte for byte.
const redactParameters = (parameters: string): string =>
  parameters.split("&").map((pair) => {
    const equals = pair.indexOf("=")
    return equals !== -1 && isSecretParameter(pair.slice(0, equals)) ? `${pair.slice(0, equals)}=***` : pair
  }).join("&")

/**
 * The URL with any user name and password replaced by `***` and the values of credential
 * query parameters (signatures, tokens, keys) replaced by `***`, safe to print and store.
 */
export const redactUrl = (url: URL): string => {
  const copy = new URL(url.href)
  if (copy.username !== "" || copy.password !== "") {
    copy.username = "***"
    copy.password = ""
  }
  const search = redactParameters(copy.search.slice(1))
  if (search !== copy.search.slice(1)) copy.search = search
  const hash = redactParameters(copy.hash.slice(1))
  if (hash !== copy.hash.slice(1)) copy.hash = hash
  return copy.href
}

/**
 * Any text with what looks like URL credentials redacted: the user information of every
 * `scheme://user:password@` (up to the last `@` before the next URL or line end; `http:` and
 * `https:` also with fewer slashes) and the values of credential parameters. For strings that
 * are not known to be URLs, or do not parse.
 */
export const redactText = (text: string): string =>
  text
    .replace(/(https?:\/{0,2}|[a-z][a-z0-9+.-]*:\/\/)(?:(?![a-z][a-z0-9+.-]*:\/\/)[^\r\n])*@/gi, "$1***@")
    .replace(/([?&#;])([^=&#?;\s]+)=([^&#;\s]*)/g, (match, lead: string, name: string) =>
      isSecretParameter(name) ? `${lead}${name}=***` : match)

/**
 * A URL given as text (any scheme: `https:`, `postgres:`), safe to print: `redactUrl` when it
 * parses, `redactText` when it does not; the text as given when it holds no credential.
 */
export const redactUrlText = (text: string): string => {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return redactText(text)
  }
  const redacted = redactUrl(url)
  return redacted === url.href ? text : redacted
}

/** How a source is named in messages, progress and checkpoints (credentials redacted). */
export const describeSource = (spec: SourceSpec): string =>
  SourceSpec.$match(spec, {
    File: ({ path }) => path,
    Http: ({ url }) => redactUrl(url),
    Readable: ({ name }) => name,
    Bytes: ({ name }) => name
  })

/** What identifies one version of a source, so a resume never splices two versions. */
export const SourceIdentity = Schema.Struct({
  size: Schema.optional(Schema.Number),
  mtimeMs: Schema.optional(Schema.Number),
  /** A file's change time: a replacement that keeps size and mtime (`cp -p`, `rsync -a`) still changes it. */
  ctimeMs: Schema.optional(Schema.Number),
  /** A file's device and inode. */
  dev: Schema.optional(Schema.Number),
  ino: Schema.optional(Schema.Number),
  etag: Schema.optional(Schema.String),
  lastModified: Schema.optional(Schema.String),
  /**
   * `false` when no strong validator vouches for this version (an HTTP object with only a weak
   * ETag, a Last-Modified that RFC 9110 does not deem strong, or nothing): a resume must not
   * splice a byte range onto what was read, so it reads the object again from byte 0. Absent
   * means the identity is strong (files, bytes, strong HTTP validators).
   */
  strongValidator: Schema.optional(Schema.Boolean)
})

/** What identifies one version of a source. */
export type SourceIdentity = typeof SourceIdentity.Type

/** Whether two observations of a source are the same version: every field known to both must agree. */
export const sameIdentity = (a: SourceIdentity, b: SourceIdentity): boolean =>
  identityFields.every((field) => a[field] === undefined || b[field] === undefined || a[field] === b[field])

const identityFields = ["size", "mtimeMs", "ctimeMs", "dev", "ino", "etag", "lastModified"] as const

/** Whether a read of this version may resume at an offset (a byte range), or must read again from byte 0. */
export const resumableAtOffset = (identity: SourceIdentity): boolean => identity.strongValidator !== false

/** Nothing exists at the source's path or URL. */
export class SourceNotFound extends Schema.TaggedError<SourceNotFound>()("SourceNotFound", {
  source: Schema.String
}) {
  override get message() {
    return `source not found: ${this.source}`
  }
}

/** The source exists but this process may not read it. */
export class AccessDenied extends Schema.TaggedError<AccessDenied>()("AccessDenied", {
  source: Schema.String
}) {
  override get message() {
    return `access denied: ${this.source}`
  }
}

/** The path names a directory or another non-regular file. */
export class NotAFile extends Schema.TaggedError<NotAFile>()("NotAFile", {
  source: Schema.String,
  /** What the path is instead: `directory`, or another kind of file. */
  kind: Schema.optional(Schema.String)
}) {
  override get message() {
    return this.kind === "directory"
      ? `${this.source} is a directory, not a file`
      : `not a regular file: ${this.source}${this.kind === undefined ? "" : ` (${this.kind})`}`
  }
}

/** The source string is not a usable URL (bad syntax or an unsupported scheme). */
export class InvalidUrl extends Schema.TaggedError<InvalidUrl>()("InvalidUrl", {
  input: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `invalid URL ${this.input}: ${this.reason}`
  }
}

/** An HTTP server answered with a status that is not a success (or a redirect it may follow). */
export class HttpStatusError extends Schema.TaggedError<HttpStatusError>()("HttpStatusError", {
  source: Schema.String,
  status: Schema.Number,
  retryAfterMs: Schema.optional(Schema.Number)
}) {
  override get message() {
    return `HTTP ${this.status} from ${this.source}`
  }
}

/** The server's answer to a range request does not match the range asked for. */
export class RangeNotSupported extends Schema.TaggedError<RangeNotSupported>()("RangeNotSupported", {
  source: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `range request refused by ${this.source}: ${this.reason}`
  }
}

/** The source is not the version a checkpoint was taken from; nothing of the new version is used. */
export class SourceChanged extends Schema.TaggedError<SourceChanged>()("SourceChanged", {
  source: Schema.String,
  expected: SourceIdentity,
  actual: SourceIdentity
}) {
  override get message() {
    return `source changed since the checkpoint: ${this.source} (expected ${formatIdentity(this.expected)}, found ${
      formatIdentity(this.actual)
    })`
  }
}

/** A redirect the client refuses: to a scheme other than http(s), or one too many (a loop). */
export class BadRedirect extends Schema.TaggedError<BadRedirect>()("BadRedirect", {
  source: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `bad redirect from ${this.source}: ${this.reason}`
  }
}

/** The source cannot start again at the offset asked for (a consumed stream, say). */
export class NotResumable extends Schema.TaggedError<NotResumable>()("NotResumable", {
  source: Schema.String,
  offset: Schema.Number,
  reason: Schema.String
}) {
  override get message() {
    return `cannot resume ${this.source} at byte ${this.offset}: ${this.reason}`
  }
}

/** A read failed in a way that may succeed when tried again (reset connection, early end of body). */
export class TransientReadError extends Schema.TaggedError<TransientReadError>()("TransientReadError", {
  source: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `read failed on ${this.source}: ${this.reason}`
  }
}

/** No bytes arrived for longer than the stall timeout. */
export class SourceStalled extends Schema.TaggedError<SourceStalled>()("SourceStalled", {
  source: Schema.String,
  afterMs: Schema.Number
}) {
  override get message() {
    return `no data from ${this.source} for ${this.afterMs} ms`
  }
}

/**
 * A TLS connection to the source cannot be trusted or spoken: its certificate is not trusted,
 * has expired or is for another host, or the server does not speak TLS on that port. Trying
 * again cannot help (curl's exit 60).
 */
export class TlsFailure extends Schema.TaggedError<TlsFailure>()("TlsFailure", {
  source: Schema.String,
  /** The certificate problem, as a person reads it, with the TLS library's code. */
  reason: Schema.String
}) {
  override get message() {
    return `TLS failure with ${this.source}: ${this.reason}`
  }
}

/** Every failure a `ByteSource` can raise. */
export type SourceError =
  | SourceNotFound
  | AccessDenied
  | NotAFile
  | InvalidUrl
  | HttpStatusError
  | BadRedirect
  | RangeNotSupported
  | SourceChanged
  | NotResumable
  | TransientReadError
  | SourceStalled
  | TlsFailure

const formatIdentity = (identity: SourceIdentity): string =>
  Object.entries(identity)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${String(value)}`)
    .join(" ") || "nothing known"

/** One attempt at reading a source from an offset. */
export interface SourceCursor {
  /** The identity of the source as this attempt saw it. */
  readonly identity: SourceIdentity
  /**
   * The next bytes, at most `maxBytes` and at least one; an empty array at the end of the
   * source. When `into` is given (at least `maxBytes` long), a source that would otherwise
   * allocate for the pull (a file read, HTTP pieces joined) uses it and returns a view of it;
   * others may ignore it.
   */
  readonly pull: (maxBytes: number, into?: Uint8Array) => Effect.Effect<Uint8Array, SourceError>
  /**
   * Starts the read of the next pull now, so that a pull of the same `maxBytes` and `into`
   * finds its bytes read or on the way (a local file's read runs in Node's thread pool while the
   * caller works). Sources that cannot read ahead on their own leave it out. A pull that asks
   * for something else waits for the read started, drops its bytes and reads anew.
   */
  readonly prefetch?: (maxBytes: number, into?: Uint8Array) => void
  /**
   * Whether the source answered with exactly the range asked for (an HTTP 206), so that other
   * ranges of this version can be read over other connections at the same time.
   */
  readonly ranged?: boolean
}

/** An opened source. */
export interface SourceHandle {
  /** The source's name for messages, progress, metrics and spans, credentials redacted. */
  readonly source: string
  /**
   * What checkpoints of this source are kept under: tells two sources apart even when their
   * redacted names agree (a hash of the full URL, never the secret itself); `source` when absent.
   */
  readonly checkpointKey?: string
  /** Whether a read can start again at any offset without re-reading what comes before. */
  readonly seekable: boolean
  /** Whether a pull may wait on a peer (a network, a pipe); such pulls are bounded by the stall timeout. */
  readonly canStall: boolean
  /**
   * The host whose connections a read over several segments counts against `maxConnections`:
   * set by sources that can read byte ranges over several connections at once (HTTP).
   */
  readonly connectionHost?: string
  /**
   * Starts an attempt at `offset`. `expected` is the identity a checkpoint recorded; an HTTP
   * source sends it as a precondition. With `end` (exclusive), only the bytes before it are
   * wanted: an HTTP source asks for that range (and the cursor ends there); others may read on,
   * and the caller stops. The attempt's connection or position lives in the scope.
   */
  readonly readFrom: (
    offset: number,
    expected?: SourceIdentity,
    end?: number
  ) => Effect.Effect<SourceCursor, SourceError, Scope.Scope>
}

/** Opens sources of every kind the library reads. */
export interface ByteSourceShape {
  /** Opens a source; whatever it holds (a file descriptor) is released with the scope. */
  readonly open: (source: SourceInput) => Effect.Effect<SourceHandle, SourceError, Scope.Scope>
}

/** Opens sources of every kind the library reads. */
export class ByteSource extends Context.Tag("streaming-reader/ByteSource")<ByteSource, ByteSourceShape>() {}
