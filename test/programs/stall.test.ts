/**
 * The stall timeout covers every phase of an HTTP attempt: a server that accepts the
 * connection and never answers, or answers the headers and then sends nothing, gives up within
 * the stall timeout, is retried as usual, and the command ends instead of hanging.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Http from "node:http"
import * as Net from "node:net"
import * as NodePath from "node:path"
import { runCli } from "../support/cli.js"
import { tempDir } from "../support/files.js"

/** A TCP server on 127.0.0.1 that runs `onConnection` for each connection; counts connections. */
const listen = (server: Net.Server) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<number>((resolve) =>
        server.listen(0, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port))
      )
    ),
    () => Effect.sync(() => server.close())
  )

describe("stall timeout", () => {
  it.scopedLive("a server that accepts the connection and never answers is given up on, retried, and the command ends", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const sockets: Array<Net.Socket> = []
      let connections = 0
      const server = Net.createServer((socket) => {
        connections++
        sockets.push(socket)
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => sockets.forEach((socket) => socket.destroy())))
      const port = yield* listen(server)
      const result = yield* Effect.promise(() =>
        runCli([
          "read",
          `http://127.0.0.1:${port}/silent.bin`,
          "--out",
          NodePath.join(dir, "out.bin"),
          "--stall-timeout",
          "500ms",
          "--retries",
          "2",
          "--state",
          NodePath.join(dir, "s.db")
        ])
      )
      assert.strictEqual(result.code, 1, result.stderr)
      assert.include(result.stderr, "no data from")
      assert.strictEqual(result.stderr.trim().split("\n").length, 1)
      assert.isAtLeast(connections, 3, "the first attempt and two retries")
    }))

  it.scopedLive("a server that sends the headers and then nothing is given up on the same way", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      let requests = 0
      const server = Http.createServer((_req, res) => {
        requests++
        res.writeHead(200, { "content-length": 1_000_000, etag: "\"x\"" })
        res.flushHeaders()
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => server.closeAllConnections()))
      const port = yield* listen(server)
      const result = yield* Effect.promise(() =>
        runCli([
          "read",
          `http://127.0.0.1:${port}/headers-only.bin`,
          "--out",
          NodePath.join(dir, "out.bin"),
          "--stall-timeout",
          "500ms",
          "--retries",
          "1",
          "--state",
          NodePath.join(dir, "s.db")
        ])
      )
      assert.strictEqual(result.code, 1, result.stderr)
      assert.include(result.stderr, "no data from")
      assert.strictEqual(requests, 2)
    }))
})
