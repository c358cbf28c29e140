#!/usr/bin/env node
// The y-socket.io 1.1.3 reference Node server (socket.io + YSocketIO), used by the
// Python tests to check the client harness against the implementation the clients
// were written for.
//
//   node tests/js/refserver.mjs [--port 0] [--host 127.0.0.1] [--token SECRET] [--test-hooks]
//
// Prints exactly one line `READY <port>` on stdout once listening (port 0 picks a
// free port); logs go to stderr. Stops on SIGTERM/SIGINT, or when stdin closes if
// --exit-on-stdin-close is given (so a dead parent never leaves it running).
//
// --token S     handshake auth must be {token: S}; otherwise CONNECT_ERROR
//               'Unauthorized' (YSocketIO's own authenticate hook).
// --test-hooks  adds one event on every document socket, for testing the harness:
//               'test-echo' (event, payload) -> the server emits `event` with
//               `payload` back to that socket (e.g. 'error', 'notification').
//               Not part of y-socket.io.
import http from 'node:http'
import { Server } from 'socket.io'
import { YSocketIO } from 'y-socket.io/dist/server'

function parseArgs(argv) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument: ${a}`)
    const key = a.slice(2)
    if (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) out[key] = argv[++i]
    else out[key] = true
  }
  return out
}

const args = parseArgs(process.argv.slice(2))
const port = Number(args.port ?? 0)
const host = String(args.host ?? '127.0.0.1')
const token = typeof args.token === 'string' ? args.token : null
const log = (...a) => console.error('[refserver]', ...a)

const httpServer = http.createServer((_req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' })
  res.end(JSON.stringify({ ok: true }))
})
const io = new Server(httpServer, { maxHttpBufferSize: 1e8 })
const ysocketio = new YSocketIO(io, {
  gcEnabled: true,
  authenticate: token !== null ? async (handshake) => handshake?.auth?.token === token : undefined,
})
ysocketio.initialize()

if (args['test-hooks']) {
  // YSocketIO keeps its parent namespace in `nsp`; 'connection' listeners on it are
  // copied to every child namespace created afterwards.
  ysocketio.nsp.on('connection', (socket) => {
    socket.on('test-echo', (event, payload) => socket.emit(String(event), payload))
  })
}

ysocketio.on('document-loaded', (doc) => log('document-loaded', JSON.stringify(doc.name)))

let stopping = false
const shutdown = (why) => {
  if (stopping) return
  stopping = true
  log('stopping:', why)
  io.close()
  httpServer.close()
  setTimeout(() => process.exit(0), 200).unref()
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
if (args['exit-on-stdin-close']) {
  process.stdin.on('end', () => shutdown('stdin closed'))
  process.stdin.on('close', () => shutdown('stdin closed'))
  process.stdin.resume()
}
process.on('uncaughtException', (err) => log('uncaught exception:', err?.stack || err))

httpServer.listen(port, host, () => {
  const actual = httpServer.address().port
  log(`listening on http://${host}:${actual} (auth: ${token !== null}, test hooks: ${!!args['test-hooks']})`)
  process.stdout.write(`READY ${actual}\n`)
})
