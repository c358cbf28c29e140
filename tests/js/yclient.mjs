#!/usr/bin/env node
// Test driver for real, unmodified npm clients: every simulated client is its own
// Y.Doc + SocketIOProvider (y-socket.io 1.1.3, socket.io-client 4.8.4, yjs 13.6.33).
//
// Controlled over stdin/stdout with JSON lines (see tests/nodeclient.py):
//   request  {"id": n, "cmd": "...", ...params}
//   reply    {"id": n, "ok": true, ...result}  |  {"id": n, "ok": false, "error": "..."}
//   event    {"event": "...", "client": name, ...}   (unsolicited)
// stdout carries nothing but these lines; logs go to stderr. A failing command is
// reported as ok:false and never ends the process. The process exits on the `exit`
// command or when stdin closes (parent gone).
//
// Document shape (node graph), root maps of every client doc:
//   nodes: nodeId -> Y.Map {type, x, y, params: Y.Map, label?}
//   edges: edgeId -> Y.Map {source, sourceSocket, target, targetSocket}
//   meta:  Y.Map
//
// Commands (timeoutMs defaults to 10000; a timed-out wait replies ok:false, timeout:true):
//   ping                                     -> {pid}
//   open {client, url, room, token?, auth?, awareness?, socketOptions?, resyncInterval?}
//                                            -> {clientId}   (new Y.Doc + SocketIOProvider)
//   wait-synced {client, timeoutMs?}
//   edit {client, op, ...}                   -> {nodeId|edgeId|key, updateBytes}
//       add-node {nodeId?, type, x, y, params?, label?} | move {nodeId, x, y}
//       set-param {nodeId, key, value} | connect {edgeId?, source, sourceSocket, target, targetSocket}
//       delete-node {nodeId} | delete-edge {edgeId} | set-meta {key, value} | big-insert {bytes, key?}
//   random-edits {client, count, seed, intervalMs?} -> {count, ops: {op: n}}
//   json {client}                            -> {json: canonical JSON string (keys sorted)}
//   state {client}                           -> {stateVector, update} (base64)
//   disconnect / connect {client}            -> {wasConnected}
//   close {client}                           (provider.destroy(); the name can be reused)
//   kill-transport {client}                  (engine.close(): a network drop; auto-reconnects)
//   set-awareness {client, state} | awareness {client} -> {states: [[clientID, state], ...]}
//   client-id {client}                       -> {clientId}
//   wait-json {client, equals: JSON string, timeoutMs?}
//   wait-converged {clients: [names], timeoutMs?} -> {json}   (same JSON and state vector)
//   wait-awareness {client, predicate: {count?, has-client-id?, lacks-client-id?,
//                   has-state?: {clientId, state}}, timeoutMs?} -> {states}
//   emit-raw {client, event, payload_b64? | args?, ack?, timeoutMs?} -> {ack: [args]} if ack
//   clients                                  -> {clients: [names]}
//   exit
// Events: ready, status {status}, synced {synced}, connection-error {message, data, type,
// description}, connection-close {reason}, server-error {payload} (socket event 'error'),
// notification {payload}, reconnect-attempt {attempt}, uncaught {error} (client: null).
// Binary values in replies/events are encoded as {"$bytes": base64}.

import * as Y from 'yjs'
import * as awarenessProtocol from 'y-protocols/awareness'
import { SocketIOProvider } from 'y-socket.io'
import readline from 'node:readline'

// Every provider registers a process 'exit' listener; many clients is expected.
process.setMaxListeners(0)

// Keep stdout for protocol lines only: anything a library logs goes to stderr.
const stdoutWrite = process.stdout.write.bind(process.stdout)
console.log = (...a) => console.error(...a)
console.info = (...a) => console.error(...a)
console.debug = (...a) => console.error(...a)

const t0 = Date.now()
const log = (...a) => console.error(`[yclient +${((Date.now() - t0) / 1000).toFixed(3)}s]`, ...a)

function send(obj) {
  let line
  try {
    line = JSON.stringify(obj)
  } catch (err) {
    line = JSON.stringify({ id: obj?.id, ok: false, error: `cannot serialize reply: ${err?.message || err}` })
  }
  stdoutWrite(line + '\n')
}

function emitEvent(client, event, data = {}) {
  send({ event, client, ...data })
}

process.on('uncaughtException', (err) => {
  log('uncaught exception:', err?.stack || err)
  send({ event: 'uncaught', client: null, error: String(err?.stack || err) })
})
process.on('unhandledRejection', (err) => {
  log('unhandled rejection:', err?.stack || err)
  send({ event: 'uncaught', client: null, error: String(err?.stack || err) })
})

// ---------------------------------------------------------------- helpers
class CmdError extends Error {
  constructor(message, { timeout = false } = {}) { super(message); this.timeout = timeout }
}
const fail = (msg) => { throw new CmdError(msg) }

const b64 = (u8) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('base64')

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (v instanceof Uint8Array) return { $bytes: b64(v) }
  if (v !== null && typeof v === 'object') {
    const out = {}
    for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k])
    return out
  }
  return v
}
const canon = (v) => JSON.stringify(sortKeys(v))

// JSON-safe form of values coming from the wire (ack arguments, server events).
function wireValue(v) {
  if (v instanceof ArrayBuffer) return { $bytes: Buffer.from(v).toString('base64') }
  if (ArrayBuffer.isView(v)) return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') }
  if (Array.isArray(v)) return v.map(wireValue)
  if (v !== null && typeof v === 'object') {
    const out = {}
    for (const [k, x] of Object.entries(v)) out[k] = wireValue(x)
    return out
  }
  return v === undefined ? null : v
}

function errorInfo(err) {
  if (err === null || err === undefined) return { message: String(err), data: null }
  return {
    message: err.message ?? String(err),
    data: err.data === undefined ? null : wireValue(err.data),
    type: err.type ?? null, // 'TransportError' for network failures
    description: err.description === undefined ? null : String(err.description?.message ?? err.description),
  }
}

// mulberry32: small seeded PRNG (random-edits must be reproducible from the seed)
function prng(seed) {
  let a = (Number(seed) >>> 0) || 0x9e3779b9
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const tick = () => new Promise((resolve) => setImmediate(resolve))

// Wait until check() returns a truthy value, re-checking only when one of the given
// emitters fires one of its events (never by polling). Rejects after timeoutMs.
function waitFor({ check, sources, timeoutMs, describe }) {
  return new Promise((resolve, reject) => {
    const first = check()
    if (first) return resolve(first)
    let done = false
    const offs = []
    const finish = (fn, v) => {
      if (done) return
      done = true
      clearTimeout(timer)
      for (const off of offs) off()
      fn(v)
    }
    const onEvent = () => {
      try {
        const v = check()
        if (v) finish(resolve, v)
      } catch (err) {
        finish(reject, err)
      }
    }
    for (const [emitter, name] of sources) {
      emitter.on(name, onEvent)
      offs.push(() => emitter.off(name, onEvent))
    }
    const timer = setTimeout(() => {
      let detail = ''
      try { detail = describe ? `: ${describe()}` : '' } catch (err) { detail = `: (describe failed: ${err})` }
      finish(reject, new CmdError(`timeout after ${timeoutMs} ms${detail}`, { timeout: true }))
    }, timeoutMs)
  })
}

const truncate = (s, n = 2000) => (s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s)

// ---------------------------------------------------------------- clients
const clients = new Map() // name -> Client

class Client {
  constructor(name, { url, room, token, auth, awareness, socketOptions, resyncInterval }) {
    this.name = name
    this.closed = false
    this.seq = 0
    this.doc = new Y.Doc()
    this.nodes = this.doc.getMap('nodes')
    this.edges = this.doc.getMap('edges')
    this.meta = this.doc.getMap('meta')
    const aw = new awarenessProtocol.Awareness(this.doc)
    if (awareness !== undefined) aw.setLocalState(awareness)
    const authObj = { ...(auth ?? {}) }
    if (token !== undefined && token !== null) authObj.token = token
    // autoConnect: the constructor's last statement is `if (autoConnect) this.connect()`,
    // which emits `status: connecting` before anyone could listen. Calling connect()
    // right after construction does exactly the same, with our listeners in place.
    const opts = { autoConnect: false, disableBc: true, auth: authObj, awareness: aw }
    if (resyncInterval !== undefined && resyncInterval !== null) opts.resyncInterval = resyncInterval
    this.provider = new SocketIOProvider(url, room, this.doc, opts, socketOptions ?? undefined)
    this.awareness = this.provider.awareness
    const p = this.provider
    const ev = (event, data) => { if (!this.closed) emitEvent(name, event, data) }
    p.on('status', ({ status }) => ev('status', { status }))
    p.on('synced', (synced) => ev('synced', { synced: !!synced }))
    p.on('connection-error', (err) => ev('connection-error', errorInfo(err)))
    p.on('connection-close', (reason) => ev('connection-close', { reason: String(reason) }))
    p.socket.on('error', (payload) => ev('server-error', { payload: wireValue(payload) }))
    p.socket.on('notification', (payload) => ev('notification', { payload: wireValue(payload) }))
    p.socket.io.on('reconnect_attempt', (attempt) => ev('reconnect-attempt', { attempt }))
    p.connect()
  }

  get socket() { return this.provider.socket }

  // one Yjs transaction; returns the number of update bytes it produced
  transact(fn) {
    const origin = { edit: this.name }
    let bytes = 0
    const onUpdate = (update, o) => { if (o === origin) bytes += update.length }
    this.doc.on('update', onUpdate)
    try {
      this.doc.transact(fn, origin)
    } finally {
      this.doc.off('update', onUpdate)
    }
    return bytes
  }

  newId(prefix) {
    this.seq++
    return `${prefix}-${this.name}-${this.doc.clientID.toString(36)}-${this.seq}`
  }

  nodeOrFail(nodeId) {
    if (typeof nodeId !== 'string') fail('nodeId (string) is required')
    const n = this.nodes.get(nodeId)
    if (!(n instanceof Y.Map)) fail(`no node ${JSON.stringify(nodeId)} in client ${this.name}'s doc`)
    return n
  }

  json() { return canon({ nodes: this.nodes.toJSON(), edges: this.edges.toJSON(), meta: this.meta.toJSON() }) }

  destroy() {
    if (this.closed) return
    this.closed = true
    try { this.provider.destroy() } catch (err) { log(`destroy ${this.name}:`, err?.stack || err) }
    // provider.destroy() only disconnects a *connected* socket; a socket that is
    // reconnecting would keep trying. socket.disconnect() stops the manager too.
    try { this.provider.socket.disconnect() } catch (err) { log(`socket.disconnect ${this.name}:`, err?.stack || err) }
    try { this.doc.destroy() } catch (err) { log(`doc.destroy ${this.name}:`, err?.stack || err) }
  }
}

function getClient(msg) {
  const name = msg.client
  if (typeof name !== 'string') fail('client (string) is required')
  const c = clients.get(name)
  if (!c) fail(`unknown client ${JSON.stringify(name)}`)
  return c
}

function makeNode(type, x, y, params, label) {
  const node = new Y.Map()
  node.set('type', type)
  node.set('x', x)
  node.set('y', y)
  const p = new Y.Map()
  for (const [k, v] of Object.entries(params ?? {})) p.set(k, v)
  node.set('params', p)
  if (label !== undefined && label !== null) node.set('label', label)
  return node
}

function makeEdge(source, sourceSocket, target, targetSocket) {
  const e = new Y.Map()
  e.set('source', source)
  e.set('sourceSocket', sourceSocket)
  e.set('target', target)
  e.set('targetSocket', targetSocket)
  return e
}

const need = (msg, key, type) => {
  const v = msg[key]
  if (type === 'number' ? typeof v !== 'number' || !Number.isFinite(v) : typeof v !== type) fail(`${key} (${type}) is required`)
  return v
}
const present = (msg, key) => {
  if (msg[key] === undefined) fail(`${key} is required`)
  return msg[key]
}

// ---------------------------------------------------------------- edit ops
const EDITS = {
  'add-node'(c, m) {
    const nodeId = m.nodeId ?? c.newId('n')
    if (typeof nodeId !== 'string') fail('nodeId must be a string')
    const type = need(m, 'type', 'string')
    const x = need(m, 'x', 'number')
    const y = need(m, 'y', 'number')
    const bytes = c.transact(() => c.nodes.set(nodeId, makeNode(type, x, y, m.params, m.label)))
    return { nodeId, updateBytes: bytes }
  },
  move(c, m) {
    const x = need(m, 'x', 'number')
    const y = need(m, 'y', 'number')
    const n = c.nodeOrFail(m.nodeId)
    const bytes = c.transact(() => { n.set('x', x); n.set('y', y) })
    return { nodeId: m.nodeId, updateBytes: bytes }
  },
  'set-param'(c, m) {
    const key = need(m, 'key', 'string')
    const value = present(m, 'value')
    const n = c.nodeOrFail(m.nodeId)
    const bytes = c.transact(() => {
      let p = n.get('params')
      if (!(p instanceof Y.Map)) { p = new Y.Map(); n.set('params', p) }
      p.set(key, value)
    })
    return { nodeId: m.nodeId, updateBytes: bytes }
  },
  connect(c, m) {
    const edgeId = m.edgeId ?? c.newId('e')
    if (typeof edgeId !== 'string') fail('edgeId must be a string')
    const source = need(m, 'source', 'string')
    const target = need(m, 'target', 'string')
    const sourceSocket = need(m, 'sourceSocket', 'string')
    const targetSocket = need(m, 'targetSocket', 'string')
    const bytes = c.transact(() => c.edges.set(edgeId, makeEdge(source, sourceSocket, target, targetSocket)))
    return { edgeId, updateBytes: bytes }
  },
  'delete-node'(c, m) {
    c.nodeOrFail(m.nodeId)
    const bytes = c.transact(() => c.nodes.delete(m.nodeId))
    return { nodeId: m.nodeId, updateBytes: bytes }
  },
  'delete-edge'(c, m) {
    const edgeId = need(m, 'edgeId', 'string')
    if (!c.edges.has(edgeId)) fail(`no edge ${JSON.stringify(edgeId)} in client ${c.name}'s doc`)
    const bytes = c.transact(() => c.edges.delete(edgeId))
    return { edgeId, updateBytes: bytes }
  },
  'set-meta'(c, m) {
    const key = need(m, 'key', 'string')
    const value = present(m, 'value')
    const bytes = c.transact(() => c.meta.set(key, value))
    return { key, updateBytes: bytes }
  },
  'big-insert'(c, m) {
    const size = need(m, 'bytes', 'number')
    if (!Number.isInteger(size) || size < 0) fail('bytes must be a non-negative integer')
    const key = m.key ?? 'big'
    if (typeof key !== 'string') fail('key must be a string')
    const bytes = c.transact(() => c.meta.set(key, 'x'.repeat(size)))
    return { key, updateBytes: bytes }
  },
}

const NODE_TYPES = ['source', 'filter', 'transform', 'mixer', 'output']
const PARAM_KEYS = ['gain', 'frequency', 'mode', 'enabled', 'label']
const RANDOM_MIX = [['move', 0.4], ['set-param', 0.25], ['add-node', 0.12], ['connect', 0.1], ['delete-edge', 0.08], ['delete-node', 0.05]]

function randomEdit(c, rand, seed, i) {
  const pick = (arr) => arr[Math.floor(rand() * arr.length)]
  const nodeIds = Array.from(c.nodes.keys()).sort()
  const edgeIds = Array.from(c.edges.keys()).sort()
  let r = rand()
  let op = RANDOM_MIX[RANDOM_MIX.length - 1][0]
  for (const [name, w] of RANDOM_MIX) { if (r < w) { op = name; break } r -= w }
  if (nodeIds.length < 3 && op !== 'add-node') op = 'add-node'
  if (op === 'delete-edge' && edgeIds.length === 0) op = 'connect'
  const id = (prefix) => `${prefix}-${c.name}-s${seed}-${i}`
  switch (op) {
    case 'add-node':
      return ['add-node', EDITS['add-node'](c, {
        nodeId: id('n'), type: pick(NODE_TYPES), x: Math.round(rand() * 1000), y: Math.round(rand() * 800),
        params: { gain: Math.round(rand() * 100) / 10 },
      })]
    case 'move':
      return ['move', EDITS.move(c, { nodeId: pick(nodeIds), x: Math.round(rand() * 1000), y: Math.round(rand() * 800) })]
    case 'set-param': {
      const key = pick(PARAM_KEYS)
      const value = key === 'enabled' ? rand() < 0.5 : key === 'mode' ? pick(['lin', 'log', 'exp']) : key === 'label' ? `l${Math.floor(rand() * 1e6)}` : Math.round(rand() * 10000) / 100
      return ['set-param', EDITS['set-param'](c, { nodeId: pick(nodeIds), key, value })]
    }
    case 'connect': {
      const source = pick(nodeIds)
      let target = pick(nodeIds)
      if (target === source) target = nodeIds[(nodeIds.indexOf(source) + 1) % nodeIds.length]
      return ['connect', EDITS.connect(c, { edgeId: id('e'), source, sourceSocket: `out${Math.floor(rand() * 2)}`, target, targetSocket: `in${Math.floor(rand() * 3)}` })]
    }
    case 'delete-edge':
      return ['delete-edge', EDITS['delete-edge'](c, { edgeId: pick(edgeIds) })]
    default:
      return ['delete-node', EDITS['delete-node'](c, { nodeId: pick(nodeIds) })]
  }
}

// ---------------------------------------------------------------- awareness predicates
function awarenessCheck(aw, predicate) {
  if (predicate === null || typeof predicate !== 'object') fail('predicate (object) is required')
  const keys = Object.keys(predicate)
  if (keys.length === 0) fail('empty predicate')
  const states = aw.getStates()
  for (const k of keys) {
    const v = predicate[k]
    if (k === 'count') {
      if (states.size !== v) return false
    } else if (k === 'has-client-id') {
      if (!states.has(v)) return false
    } else if (k === 'lacks-client-id') {
      if (states.has(v)) return false
    } else if (k === 'has-state') {
      // {clientId, state}: that client's state equals `state` (key order ignored)
      if (v === null || typeof v !== 'object' || typeof v.clientId !== 'number') fail('has-state needs {clientId, state}')
      if (!states.has(v.clientId) || canon(states.get(v.clientId)) !== canon(v.state ?? null)) return false
    } else {
      fail(`unknown predicate ${JSON.stringify(k)} (count, has-client-id, lacks-client-id, has-state)`)
    }
  }
  return true
}
const awarenessList = (aw) => Array.from(aw.getStates().entries())

// ---------------------------------------------------------------- commands
const timeoutOf = (m, d = 10000) => {
  const t = m.timeoutMs ?? d
  if (typeof t !== 'number' || !(t >= 0)) fail('timeoutMs must be a non-negative number')
  return t
}

const COMMANDS = {
  ping() { return { pid: process.pid } },

  open(m) {
    const name = need(m, 'client', 'string')
    if (clients.has(name)) fail(`client ${JSON.stringify(name)} already exists (close it first)`)
    const url = need(m, 'url', 'string')
    const room = need(m, 'room', 'string')
    if (m.auth !== undefined && (m.auth === null || typeof m.auth !== 'object')) fail('auth must be an object')
    const c = new Client(name, { url, room, token: m.token, auth: m.auth, awareness: m.awareness, socketOptions: m.socketOptions, resyncInterval: m.resyncInterval })
    clients.set(name, c)
    return { clientId: c.doc.clientID }
  },

  async 'wait-synced'(m) {
    const c = getClient(m)
    await waitFor({
      check: () => c.provider.synced,
      sources: [[c.provider, 'synced']],
      timeoutMs: timeoutOf(m),
      describe: () => `client ${c.name} not synced (socket connected: ${c.socket.connected})`,
    })
    return {}
  },

  edit(m) {
    const c = getClient(m)
    const op = need(m, 'op', 'string')
    const fn = EDITS[op]
    if (!fn) fail(`unknown edit op ${JSON.stringify(op)} (${Object.keys(EDITS).join(', ')})`)
    return fn(c, m)
  },

  async 'random-edits'(m) {
    const c = getClient(m)
    const count = need(m, 'count', 'number')
    const seed = m.seed ?? 1
    const interval = m.intervalMs ?? 0
    const rand = prng(seed)
    const ops = {}
    for (let i = 0; i < count; i++) {
      if (c.closed) fail(`client ${c.name} closed during random-edits`)
      const [op] = randomEdit(c, rand, seed, i)
      ops[op] = (ops[op] ?? 0) + 1
      if (interval > 0) await sleep(interval)
      else await tick() // let the socket flush and remote updates interleave
    }
    return { count, ops }
  },

  json(m) { return { json: getClient(m).json() } },

  state(m) {
    const c = getClient(m)
    const store = c.doc.store
    return {
      stateVector: b64(Y.encodeStateVector(c.doc)),
      update: b64(Y.encodeStateAsUpdate(c.doc)),
      // structs / deletions received but not integrable yet (missing predecessors)
      pending: store.pendingStructs ? b64(store.pendingStructs.update) : null,
      missing: store.pendingStructs ? [...store.pendingStructs.missing.entries()] : null,
      pendingDs: store.pendingDs ? b64(store.pendingDs) : null,
    }
  },

  disconnect(m) {
    const c = getClient(m)
    const wasConnected = c.socket.connected
    c.provider.disconnect()
    // provider.disconnect() is a no-op while the socket is (re)connecting; stop that
    // too so that the client is reliably offline afterwards.
    if (c.socket.active) c.socket.disconnect()
    return { wasConnected }
  },

  connect(m) {
    const c = getClient(m)
    const wasConnected = c.socket.connected
    c.provider.connect()
    return { wasConnected }
  },

  close(m) {
    const c = getClient(m)
    c.destroy()
    clients.delete(c.name)
    return {}
  },

  'kill-transport'(m) {
    const c = getClient(m)
    const engine = c.socket.io.engine
    if (!engine || !c.socket.connected) fail(`client ${c.name} has no open transport`)
    engine.close()
    return {}
  },

  'set-awareness'(m) {
    const c = getClient(m)
    c.awareness.setLocalState(present(m, 'state'))
    return {}
  },

  awareness(m) { return { states: awarenessList(getClient(m).awareness) } },

  'client-id'(m) { return { clientId: getClient(m).doc.clientID } },

  async 'wait-json'(m) {
    const c = getClient(m)
    const equals = need(m, 'equals', 'string')
    const want = canon(JSON.parse(equals))
    await waitFor({
      check: () => c.json() === want,
      sources: [[c.doc, 'update']],
      timeoutMs: timeoutOf(m),
      describe: () => `client ${c.name}'s doc is ${truncate(c.json())}, want ${truncate(want)}`,
    })
    return {}
  },

  async 'wait-converged'(m) {
    const names = m.clients
    if (!Array.isArray(names) || names.length < 2) fail('clients (list of at least 2 names) is required')
    const cs = names.map((client) => getClient({ client }))
    const same = () => {
      const j = cs.map((c) => c.json())
      const sv = cs.map((c) => b64(Y.encodeStateVector(c.doc)))
      return j.every((x) => x === j[0]) && sv.every((x) => x === sv[0])
    }
    await waitFor({
      check: same,
      sources: cs.map((c) => [c.doc, 'update']),
      timeoutMs: timeoutOf(m),
      describe: () => cs.map((c) => `\n  ${c.name} (synced ${c.provider.synced}, sv ${b64(Y.encodeStateVector(c.doc))}): ${truncate(c.json(), 600)}`).join(''),
    })
    return { json: cs[0].json() }
  },

  async 'wait-awareness'(m) {
    const c = getClient(m)
    const predicate = m.predicate
    awarenessCheck(c.awareness, predicate) // validates eagerly
    await waitFor({
      check: () => awarenessCheck(c.awareness, predicate),
      sources: [[c.awareness, 'change']],
      timeoutMs: timeoutOf(m),
      describe: () => `client ${c.name} awareness is ${JSON.stringify(awarenessList(c.awareness))}, predicate ${JSON.stringify(predicate)}`,
    })
    return { states: awarenessList(c.awareness) }
  },

  async 'emit-raw'(m) {
    const c = getClient(m)
    const event = need(m, 'event', 'string')
    let args
    if (m.payload_b64 !== undefined && m.payload_b64 !== null) {
      args = [new Uint8Array(Buffer.from(need(m, 'payload_b64', 'string'), 'base64'))]
    } else if (m.args !== undefined) {
      if (!Array.isArray(m.args)) fail('args must be a list')
      args = m.args
    } else {
      args = []
    }
    if (!m.ack) {
      c.socket.emit(event, ...args)
      return {}
    }
    const timeoutMs = timeoutOf(m, 5000)
    const ackArgs = await new Promise((resolve, reject) => {
      c.socket.timeout(timeoutMs).emit(event, ...args, (err, ...got) => {
        if (err) reject(new CmdError(`no ack for ${JSON.stringify(event)} within ${timeoutMs} ms (${err?.message || err})`, { timeout: true }))
        else resolve(got)
      })
    })
    return { ack: ackArgs.map(wireValue) }
  },

  clients() { return { clients: Array.from(clients.keys()) } },
}

// ---------------------------------------------------------------- main loop
let exiting = false

function shutdown(code) {
  if (exiting) return
  exiting = true
  for (const c of clients.values()) c.destroy()
  clients.clear()
  // let the socket close frames and the last stdout line go out
  setTimeout(() => process.exit(code), 50)
}

async function handle(line) {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    send({ id: null, ok: false, error: `bad JSON line: ${err.message}` })
    return
  }
  const id = msg?.id ?? null
  try {
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) fail('request must be a JSON object')
    const cmd = msg.cmd
    if (cmd === 'exit') {
      send({ id, ok: true })
      shutdown(0)
      return
    }
    if (exiting) fail('exiting')
    const fn = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined
    if (!fn) fail(`unknown command ${JSON.stringify(cmd)}`)
    const result = await fn(msg)
    send({ ...(result ?? {}), id, ok: true })
  } catch (err) {
    if (!(err instanceof CmdError)) log(`command ${JSON.stringify(msg?.cmd)} failed:`, err?.stack || err)
    if (err instanceof CmdError) send({ id, ok: false, error: err.message, ...(err.timeout ? { timeout: true } : {}) })
    else send({ id, ok: false, error: String(err?.stack || err) })
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => { handle(line) })
rl.on('close', () => { log('stdin closed; exiting'); shutdown(0) })
process.on('SIGTERM', () => shutdown(0))

log(`ready (pid ${process.pid}, node ${process.version}, yjs clients via y-socket.io)`)
send({ event: 'ready', client: null, pid: process.pid })
