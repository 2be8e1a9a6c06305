/**
 * A real HTTP server on 127.0.0.1 for tests: serves bytes with Range / 206 / Content-Range /
 * ETag / Last-Modified / If-Range / If-Match, and injects faults (ignored ranges, lying Content-Range,
 * extra or missing bytes, dropped or stalled connections, error statuses, redirects).
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import type { Server, Socket } from "node:net"
import * as HttpClient from "@effect/platform/HttpClient"
import {
  formatContentRange,
  formatUnsatisfiedRange,
  parseRangeHeader,
  servedRange
} from "../../src/layers/sources/HttpRanges.js"
import { makeHttpSource } from "../../src/layers/sources/HttpSource.js"

/** How the data path (`/file`) answers; every field can be changed while the server runs. */
export interface ServeOptions {
  /** The bytes served. */
  readonly body: Uint8Array
  /** The ETag sent (quotes included, `W/` for a weak one); none when `undefined`. */
  readonly etag: string | undefined
  /** The Last-Modified sent; none when `undefined`. */
  readonly lastModified: string | undefined
  /** Answer every request 200 with the whole body, as a server without range support. */
  readonly ignoreRange: boolean
  /** Answer 206 with a Content-Range whose start is off by this many bytes. */
  readonly lieContentRange: number
  /** Send this many bytes past the end of the range (Content-Length counts them). */
  readonly extraBytes: number
  /** Destroy the socket after this many body bytes (Content-Length announces the whole body). */
  readonly dropAfter: number | undefined
  /** End the body cleanly after this many bytes (Content-Range still claims the whole range). */
  readonly truncateAfter: number | undefined
  /** Send this many body bytes, then nothing more until the client or the server closes. */
  readonly stallAfter: number | undefined
  /** Write the body in pieces of this size, waiting for the socket to drain between them. */
  readonly writeChunk: number
  /** The Date sent: the current time when `undefined`, none when `null`. */
  readonly date: string | null | undefined
  /** Answer a range with at most this many bytes (a 206 for a shorter range than asked). */
  readonly rangeCap: number | undefined
  /** Send `*` as the total in Content-Range. */
  readonly unknownTotal: boolean
  /** After this many requests to the data path, answer every further one `status` with no body. */
  readonly statusAfter: { readonly requests: number; readonly status: number } | undefined
}

/** One request the server received. */
export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly headers: Http.IncomingHttpHeaders
}

/** A running test server. */
export interface TestServer {
  /** `http://127.0.0.1:<port>`. */
  readonly origin: string
  /** The port the server listens on. */
  readonly port: number
  /** An absolute URL for a path (default `/file`, the data path). */
  readonly url: (path?: string) => string
  /** How many requests arrived, on every path. */
  readonly requests: () => number
  /** Every request received, oldest first. */
  readonly requestLog: () => ReadonlyArray<RecordedRequest>
  /** How many TCP connections are open right now. */
  readonly openConnections: () => number
  /** Succeeds with `true` once no connection is open, `false` after `timeoutMs` (real time, not the TestClock). */
  readonly awaitNoConnections: (timeoutMs: number) => Effect.Effect<boolean>
  /** Replaces the body and gives it a new ETag (a new version of the object). */
  readonly setBody: (body: Uint8Array) => void
  /** Sets the ETag, or removes it with `undefined`. */
  readonly setEtag: (etag: string | undefined) => void
  /** Gives the same bytes a new strong ETag (a new version as far as the client can tell). */
  readonly changeEtag: () => void
  /** Changes how the data path answers from the next request on. */
  readonly configure: (options: Partial<ServeOptions>) => void
  /** The next `times` requests to the data path are answered `status` with `headers` and no body. */
  readonly failNext: (times: number, status: number, headers?: Readonly<Record<string, string>>) => void
  /** Destroys every open connection now (the server keeps listening). */
  readonly dropConnections: () => void
}

/**
 * Paths: `/file` serves the body; `/redirect?to=<path>` answers 302 to `to` (an absolute URL
 * or a path); `/redirect-loop` redirects to itself; `/redirect-chain/<n>` redirects n times
 * before reaching `/file`; `/status/<code>?retryAfter=<value>` answers `code` with that
 * Retry-After. Anything else is 404.
 */
export const makeTestServer = (initial: Partial<ServeOptions> = {}): Effect.Effect<TestServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: TestServer; readonly close: () => Promise<void> }>((resume) => {
      let version = 1
      let options: ServeOptions = {
        body: new Uint8Array(0),
        etag: `"v${version}"`,
        lastModified: new Date(Date.UTC(2024, 0, 1)).toUTCString(),
        ignoreRange: false,
        lieContentRange: 0,
        extraBytes: 0,
        dropAfter: undefined,
        truncateAfter: undefined,
        stallAfter: undefined,
        writeChunk: 64 * 1024,
        date: undefined,
        rangeCap: undefined,
        unknownTotal: false,
        statusAfter: undefined,
        ...initial
      }
      let dataRequests = 0
      const failures: Array<{ readonly status: number; readonly headers: Readonly<Record<string, string>> }> = []
      const log: Array<RecordedRequest> = []
      const sockets = new Set<Socket>()
      const closeListeners = new Set<() => void>()

      const server = Http.createServer((req, res) => {
        log.push({ method: req.method ?? "GET", path: req.url ?? "/", headers: req.headers })
        handle(req, res)
      })
      server.on("connection", (socket) => {
        sockets.add(socket)
        socket.on("close", () => {
          sockets.delete(socket)
          for (const listener of closeListeners) listener()
        })
      })

      const handle = (req: Http.IncomingMessage, res: Http.ServerResponse) => {
        const url = new URL(req.url ?? "/", "http://127.0.0.1")
        const path = url.pathname
        if (path === "/file") return serveFile(req, res)
        if (path === "/redirect") return redirect(res, url.searchParams.get("to") ?? "/file")
        if (path === "/redirect-loop") return redirect(res, "/redirect-loop")
        const chain = /^\/redirect-chain\/(\d+)$/.exec(path)
        if (chain !== null) {
          const n = Number(chain[1])
          return redirect(res, n <= 0 ? "/file" : `/redirect-chain/${n - 1}`)
        }
        const status = /^\/status\/(\d{3})$/.exec(path)
        if (status !== null) {
          const retryAfter = url.searchParams.get("retryAfter")
          res.writeHead(Number(status[1]), retryAfter === null ? {} : { "retry-after": retryAfter })
          return res.end()
        }
        res.writeHead(404)
        res.end()
      }

      const redirect = (res: Http.ServerResponse, to: string) => {
        res.writeHead(302, { location: to })
        res.end()
      }

      const serveFile = (req: Http.IncomingMessage, res: Http.ServerResponse) => {
        dataRequests += 1
        if (options.date === null) res.sendDate = false
        else if (options.date !== undefined) res.setHeader("date", options.date)
        const failure = failures.shift() ??
          (options.statusAfter !== undefined && dataRequests > options.statusAfter.requests
            ? { status: options.statusAfter.status, headers: {} }
            : undefined)
        if (failure !== undefined) {
          res.writeHead(failure.status, failure.headers)
          return res.end()
        }
        const { body, etag, lastModified } = options
        const size = body.byteLength
        const headers: Record<string, string | number> = { "content-type": "application/octet-stream" }
        if (!options.ignoreRange) headers["accept-ranges"] = "bytes"
        if (etag !== undefined) headers["etag"] = etag
        if (lastModified !== undefined) headers["last-modified"] = lastModified

        const ifMatch = req.headers["if-match"]
        if (
          ifMatch !== undefined && ifMatch !== "*" && (etag === undefined || etag.startsWith("W/") || ifMatch !== etag)
        ) {
          res.writeHead(412, headers)
          return res.end()
        }
        const range = options.ignoreRange ? undefined : parseRangeHeader(req.headers.range)
        const ifRangeHeader = req.headers["if-range"]
        const ifRange = Array.isArray(ifRangeHeader) ? ifRangeHeader[0] : ifRangeHeader
        const rangeApplies = range !== undefined &&
          (ifRange === undefined ||
            (ifRange.startsWith("\"") && etag !== undefined && !etag.startsWith("W/") && ifRange === etag) ||
            (!ifRange.startsWith("\"") && !ifRange.startsWith("W/") && ifRange === lastModified))

        let status = 200
        let start = 0
        let end = size - 1
        if (rangeApplies) {
          const served = servedRange(range, size)
          if (served === undefined) {
            res.writeHead(416, { ...headers, "content-range": formatUnsatisfiedRange(size) })
            return res.end()
          }
          status = 206
          start = served.start
          end = Math.min(served.end, start + (options.rangeCap ?? size) - 1)
          headers["content-range"] = formatContentRange({
            start: start + options.lieContentRange,
            end,
            total: options.unknownTotal ? undefined : size
          })
        }
        let payload = body.subarray(start, end + 1)
        if (options.extraBytes > 0) {
          const padded = new Uint8Array(payload.byteLength + options.extraBytes)
          padded.set(payload)
          padded.fill(0xee, payload.byteLength)
          payload = padded
        }
        if (options.truncateAfter !== undefined) payload = payload.subarray(0, options.truncateAfter)
        headers["content-length"] = payload.byteLength
        res.writeHead(status, headers)

        const limit = Math.min(payload.byteLength, options.dropAfter ?? Infinity, options.stallAfter ?? Infinity)
        const dropAfter = options.dropAfter
        const stall = options.stallAfter !== undefined
        const piece = Math.max(1, options.writeChunk)
        let sent = 0
        const writeMore = () => {
          while (sent < limit) {
            const next = payload.subarray(sent, Math.min(limit, sent + piece))
            sent += next.byteLength
            if (!res.write(next)) return void res.once("drain", writeMore)
          }
          if (dropAfter !== undefined && dropAfter < payload.byteLength) {
            // flush what was written, then cut the connection mid-body
            return void res.write(new Uint8Array(0), () => req.socket.destroy())
          }
          if (stall && sent < payload.byteLength) return
          res.end()
        }
        writeMore()
      }

      const awaitNoConnections = (timeoutMs: number) =>
        Effect.async<boolean>((resumeWait) => {
          if (sockets.size === 0) return resumeWait(Effect.succeed(true))
          const done = (result: boolean) => {
            clearTimeout(timer)
            closeListeners.delete(check)
            resumeWait(Effect.succeed(result))
          }
          const check = () => {
            if (sockets.size === 0) done(true)
          }
          const timer = setTimeout(() => done(false), timeoutMs)
          closeListeners.add(check)
          return Effect.sync(() => {
            clearTimeout(timer)
            closeListeners.delete(check)
          })
        })

      server.on("error", (error) => resume(Effect.die(error)))
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        if (address === null || typeof address === "string") return resume(Effect.dieMessage("no TCP address"))
        const origin = `http://127.0.0.1:${address.port}`
        const testServer: TestServer = {
          origin,
          port: address.port,
          url: (path = "/file") => `${origin}${path}`,
          requests: () => log.length,
          requestLog: () => log.slice(),
          openConnections: () => sockets.size,
          awaitNoConnections,
          setBody: (body) => {
            version += 1
            options = { ...options, body, etag: `"v${version}"` }
          },
          setEtag: (etag) => {
            options = { ...options, etag }
          },
          changeEtag: () => {
            version += 1
            options = { ...options, etag: `"v${version}"` }
          },
          configure: (changes) => {
            options = { ...options, ...changes }
          },
          failNext: (times, status, headers = {}) => {
            for (let i = 0; i < times; i++) failures.push({ status, headers })
          },
          dropConnections: () => {
            for (const socket of sockets) socket.destroy()
          }
        }
        const close = () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
        resume(Effect.succeed({ server: testServer, close }))
      })
    }),
    ({ close }) => Effect.promise(close)
  ).pipe(Effect.map(({ server }) => server))

/** A port on 127.0.0.1 where nothing listens (bound, then released). */
export const unusedPort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = Http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = address !== null && typeof address !== "string" ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * Listens with `server` on an unused port of 127.0.0.1 until the scope closes, then destroys
 * every connection still open and closes it; the port.
 */
export const listenOnLoopback = (server: Server): Effect.Effect<number, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly sockets: ReadonlySet<Socket> }>((resume) => {
      const sockets = new Set<Socket>()
      server.on("connection", (socket: Socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed({ port: typeof address === "object" && address !== null ? address.port : 0, sockets }))
      })
    }),
    ({ sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ port }) => port))

/** The HTTP source of `url` over the `HttpClient` provided. */
export const httpSource = (url: string) =>
  Effect.map(HttpClient.HttpClient, (client) => makeHttpSource(client, new URL(url)))
