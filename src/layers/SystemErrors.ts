/**
 * SystemErrors: what the error codes of Node's file system and network calls mean (`ENOENT`,
 * `ECONNRESET`, undici's `UND_ERR_*`), said once: a short human reason and what kind of failure
 * the code is, for the file source, the HTTP source and the file destination alike; and making
 * directories in a way that always returns.
 */
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"

/**
 * What a failure is: the thing is missing, access to it is denied, it is a directory, it will
 * fail the same way when tried again (`Permanent`), or it may pass when tried again (`Transient`).
 */
export type SystemFailureKind = "NotFound" | "AccessDenied" | "IsDirectory" | "Permanent" | "Transient"

/** What one known error code means. */
export interface SystemFailure {
  /** The code itself: `ENOENT`, `ECONNRESET`, `UND_ERR_SOCKET`. */
  readonly code: string
  /** A short human reason, never the raw message (which may name a URL with its credentials). */
  readonly reason: string
  /** What kind of failure the code is. */
  readonly kind: SystemFailureKind
}

const known = (reason: string, kind: SystemFailureKind): Omit<SystemFailure, "code"> => ({ reason, kind })

const failures: Readonly<Record<string, Omit<SystemFailure, "code">>> = {
  ENOENT: known("no such file or directory", "NotFound"),
  ENOTDIR: known("a file is in the way", "NotFound"),
  EISDIR: known("is a directory", "IsDirectory"),
  ERR_FS_EISDIR: known("is a directory", "IsDirectory"),
  EACCES: known("permission denied", "AccessDenied"),
  EPERM: known("permission denied", "AccessDenied"),
  EEXIST: known("a file is in the way", "Permanent"),
  ENAMETOOLONG: known("name too long", "Permanent"),
  ELOOP: known("too many levels of symbolic links", "Permanent"),
  EROFS: known("read-only file system", "Permanent"),
  ENOSPC: known("no space left on device", "Permanent"),
  EDQUOT: known("disk quota exceeded", "Permanent"),
  EIO: known("input/output error", "Transient"),
  EMFILE: known("too many open files", "Transient"),
  ENFILE: known("too many open files", "Transient"),
  ENOTFOUND: known("host not found", "NotFound"),
  ECONNREFUSED: known("connection refused", "Transient"),
  ECONNRESET: known("connection reset", "Transient"),
  ECONNABORTED: known("connection aborted", "Transient"),
  EPIPE: known("connection closed", "Transient"),
  UND_ERR_SOCKET: known("connection closed", "Transient"),
  UND_ERR_CLOSED: known("connection closed", "Transient"),
  UND_ERR_ABORTED: known("request aborted", "Transient"),
  ABORT_ERR: known("request aborted", "Transient"),
  ETIMEDOUT: known("timed out", "Transient"),
  UND_ERR_CONNECT_TIMEOUT: known("connect timed out", "Transient"),
  UND_ERR_HEADERS_TIMEOUT: known("timed out waiting for headers", "Transient"),
  UND_ERR_BODY_TIMEOUT: known("timed out waiting for the body", "Transient"),
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: known("body length differs from Content-Length", "Transient"),
  EHOSTUNREACH: known("host unreachable", "Transient"),
  ENETUNREACH: known("network unreachable", "Transient"),
  ENETDOWN: known("network down", "Transient"),
  EAI_AGAIN: known("DNS lookup failed", "Transient")
}

const codeAt = (error: unknown, depth: number): string | undefined => {
  if (typeof error !== "object" || error === null || depth > 5) return undefined
  const code = (error as { readonly code?: unknown }).code
  if (typeof code === "string" && code !== "") return code
  const errors = (error as { readonly errors?: unknown }).errors
  if (Array.isArray(errors)) {
    for (const inner of errors) {
      const found = codeAt(inner, depth + 1)
      if (found !== undefined) return found
    }
  }
  return codeAt((error as { readonly cause?: unknown }).cause, depth + 1)
}

/** The first error code in an error, its `cause` chain and an `AggregateError`'s errors; `undefined` when none. */
export const errorCode = (error: unknown): string | undefined => codeAt(error, 0)

/** What an error's code means, when the code is one this module knows. */
export const systemFailure = (error: unknown): SystemFailure | undefined => {
  const code = errorCode(error)
  const failure = code === undefined ? undefined : failures[code]
  return code === undefined || failure === undefined ? undefined : { code, ...failure }
}

// The kinds of the reasons `@effect/platform` gives a `SystemError`, for one that carries no code
// (a FileSystem other than Node's): `BadResource` stands for EISDIR, ENOTDIR and ELOOP at once.
const platformReasonKinds: Readonly<Record<string, SystemFailureKind>> = {
  NotFound: "NotFound",
  PermissionDenied: "AccessDenied",
  BadResource: "IsDirectory"
}

/** What kind of failure an error is: by its code when known, else by the reason of a platform `SystemError`. */
export const failureKind = (error: unknown): SystemFailureKind | undefined => {
  const failure = systemFailure(error)
  if (failure !== undefined) return failure.kind
  if (typeof error !== "object" || error === null) return undefined
  const { _tag, reason } = error as { readonly _tag?: unknown; readonly reason?: unknown }
  return _tag === "SystemError" && typeof reason === "string" ? platformReasonKinds[reason] : undefined
}

/** One short reason for a file system failure: its code's reason when known, else the error's own message. */
export const fileSystemReason = (error: unknown): string =>
  systemFailure(error)?.reason ?? (error instanceof Error ? error.message : String(error))

/** One short, credential-free reason for a network failure: never the raw message, which may hold the URL. */
export const networkReason = (error: unknown): string => {
  const failure = systemFailure(error)
  if (failure !== undefined) return failure.reason
  const code = errorCode(error)
  const name = typeof error === "object" && error !== null && "name" in error ? String(error.name) : "unknown"
  if (name === "HTTPParserError" || code?.startsWith("HPE_")) return "invalid HTTP response"
  if (name === "AbortError") return "request aborted"
  if (code?.startsWith("ERR_TLS") || code?.includes("CERT")) return `TLS failure (${code})`
  return `network error (${code ?? name})`
}

/** What each certificate error code of Node's TLS means, as a person reads it. */
const certificateProblems: Readonly<Record<string, string>> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: "the certificate is self-signed and not trusted",
  SELF_SIGNED_CERT_IN_CHAIN: "the certificate chain ends in a CA that is not trusted",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "the certificate is not signed by a trusted CA",
  UNABLE_TO_GET_ISSUER_CERT: "the certificate's issuer is not trusted",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "the certificate's issuer is not trusted",
  CERT_UNTRUSTED: "the certificate is not trusted",
  CERT_SIGNATURE_FAILURE: "the certificate's signature is invalid",
  CERT_HAS_EXPIRED: "the certificate has expired",
  CERT_NOT_YET_VALID: "the certificate is not valid yet",
  CERT_REVOKED: "the certificate is revoked",
  ERR_TLS_CERT_ALTNAME_INVALID: "the certificate is for another host",
  HOSTNAME_MISMATCH: "the certificate is for another host",
  ERR_SSL_WRONG_VERSION_NUMBER: "the server does not speak TLS on this port"
}

/**
 * The certificate or protocol problem of a TLS failure that trying again cannot fix (an untrusted,
 * expired or misnamed certificate, TLS to a plain-HTTP port), with its code; `undefined` for
 * any other error.
 */
export const permanentTlsProblem = (error: unknown): string | undefined => {
  const code = errorCode(error)
  if (code === undefined) return undefined
  const problem = certificateProblems[code]
  if (problem !== undefined) return `${problem} (${code})`
  // OpenSSL's "wrong version number" arrives as EPROTO with the library's reason in the message.
  if (code === "EPROTO" && /wrong version number|packet length too long|http request/i.test(messageOf(error))) {
    return "the server does not speak TLS on this port (EPROTO)"
  }
  return undefined
}

const messageOf = (error: unknown, depth = 0): string => {
  if (typeof error !== "object" || error === null || depth > 5) return ""
  const own = error instanceof Error ? error.message : ""
  return `${own} ${messageOf((error as { readonly cause?: unknown }).cause, depth + 1)}`
}

/**
 * Makes `dir` and its missing parents. Not `mkdirSync(dir, { recursive: true })`: on Node 20 it
 * never returns for a directory that cannot be made under `/proc`.
 */
export const makeDirectories = (dir: string): void => {
  try {
    NodeFs.mkdirSync(dir)
  } catch (error) {
    const code = errorCode(error)
    if (code === "EEXIST") return
    const parent = NodePath.dirname(dir)
    if (code !== "ENOENT" || parent === dir) throw error
    makeDirectories(parent)
    NodeFs.mkdirSync(dir)
  }
}
