import { SystemError } from "@effect/platform/Error"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import {
  errorCode,
  failureKind,
  fileSystemReason,
  networkReason,
  systemFailure
} from "../../src/layers/SystemErrors.js"

const coded = (code: string, message = `${code}: something, open '/secret/path'`) =>
  Object.assign(new Error(message), { code })

describe("SystemErrors", () => {
  it.effect("finds the code in the error, its cause chain and an AggregateError's errors", () =>
    Effect.sync(() => {
      assert.strictEqual(errorCode(coded("ENOENT")), "ENOENT")
      assert.strictEqual(errorCode(new Error("fetch failed", { cause: coded("ECONNRESET") })), "ECONNRESET")
      assert.strictEqual(errorCode(new AggregateError([new Error("x"), coded("ECONNREFUSED")])), "ECONNREFUSED")
      assert.strictEqual(
        errorCode(new Error("outer", { cause: new AggregateError([coded("EHOSTUNREACH")]) })),
        "EHOSTUNREACH"
      )
      for (const nothing of [undefined, null, "ENOENT", 42, new Error("plain"), { code: "" }, { code: 7 }]) {
        assert.isUndefined(errorCode(nothing))
      }
    }))

  it.effect("a real file system error is known by its code", () =>
    Effect.sync(() => {
      const error = (() => {
        try {
          NodeFs.statSync("/no/such/path/here")
        } catch (error) {
          return error
        }
      })()
      assert.deepStrictEqual(systemFailure(error), {
        code: "ENOENT",
        reason: "no such file or directory",
        kind: "NotFound"
      })
      assert.strictEqual(fileSystemReason(error), "no such file or directory")
    }))

  it.effect("each code has one reason and one kind", () =>
    Effect.sync(() => {
      const cases = [
        ["ENOENT", "NotFound"],
        ["ENOTDIR", "NotFound"],
        ["ENOTFOUND", "NotFound"],
        ["EACCES", "AccessDenied"],
        ["EPERM", "AccessDenied"],
        ["EISDIR", "IsDirectory"],
        ["ERR_FS_EISDIR", "IsDirectory"],
        ["EROFS", "Permanent"],
        ["ENOSPC", "Permanent"],
        ["ELOOP", "Permanent"],
        ["EIO", "Transient"],
        ["ECONNRESET", "Transient"],
        ["UND_ERR_SOCKET", "Transient"],
        ["EAI_AGAIN", "Transient"]
      ] as const
      for (const [code, kind] of cases) assert.strictEqual(systemFailure(coded(code))?.kind, kind, code)
      assert.isUndefined(systemFailure(coded("EWHATEVER")))
      assert.strictEqual(fileSystemReason(coded("EISDIR")), "is a directory")
      assert.strictEqual(fileSystemReason(coded("EEXIST")), "a file is in the way")
      assert.strictEqual(
        networkReason(new Error("fetch failed", { cause: coded("ECONNREFUSED") })),
        "connection refused"
      )
    }))

  it.effect("a platform SystemError is known by its cause's code, else by its reason", () =>
    Effect.sync(() => {
      const platform = (reason: SystemError["reason"], cause?: unknown) =>
        new SystemError({ reason, module: "FileSystem", method: "stat", pathOrDescriptor: "/p", cause })
      assert.strictEqual(failureKind(platform("BadResource", coded("ENOTDIR"))), "NotFound")
      assert.strictEqual(failureKind(platform("BadResource", coded("ELOOP"))), "Permanent")
      assert.strictEqual(failureKind(platform("Unknown", coded("EPERM"))), "AccessDenied")
      assert.strictEqual(failureKind(platform("PermissionDenied")), "AccessDenied")
      assert.strictEqual(failureKind(platform("NotFound")), "NotFound")
      assert.strictEqual(failureKind(platform("BadResource")), "IsDirectory")
      assert.isUndefined(failureKind(platform("Unknown")))
      assert.isUndefined(failureKind(new Error("plain")))
      assert.strictEqual(fileSystemReason(platform("Unknown", coded("EIO"))), "input/output error")
    }))

  it.effect("an unknown file system failure keeps its message; an unknown network failure never does", () =>
    Effect.sync(() => {
      assert.strictEqual(fileSystemReason(coded("EWHATEVER", "odd failure")), "odd failure")
      assert.strictEqual(fileSystemReason("just text"), "just text")
      const secret = "http://user:s3cret@h/x"
      assert.strictEqual(networkReason(coded("EWHATEVER", secret)), "network error (EWHATEVER)")
      assert.strictEqual(
        networkReason(Object.assign(new Error(secret), { name: "HTTPParserError" })),
        "invalid HTTP response"
      )
      assert.strictEqual(networkReason(coded("HPE_INVALID_CONSTANT", secret)), "invalid HTTP response")
      assert.strictEqual(networkReason(Object.assign(new Error(secret), { name: "AbortError" })), "request aborted")
      assert.strictEqual(
        networkReason(coded("ERR_TLS_CERT_ALTNAME_INVALID", secret)),
        "TLS failure (ERR_TLS_CERT_ALTNAME_INVALID)"
      )
      assert.strictEqual(networkReason(new TypeError(secret)), "network error (TypeError)")
      assert.strictEqual(networkReason(undefined), "network error (unknown)")
    }))
})
