// The document model and every edit the editor makes, each one Yjs transaction.
//
// Root types (DESIGN §4):
//   nodes: Y.Map nodeId -> Y.Map {type, x, y, params: Y.Map, label?}
//   edges: Y.Map edgeId -> Y.Map {source, sourceSocket, target, targetSocket}
//   meta:  Y.Map {name, ...}
// Other clients may write fields we do not know; we keep them untouched.
import * as Y from 'yjs'
import { typeInfo } from './nodetypes.js'

/** Transaction origin of the editor's own edits (anything but the provider is sent). */
export const LOCAL = 'editor'

export function roots (doc) {
  return { nodes: doc.getMap('nodes'), edges: doc.getMap('edges'), meta: doc.getMap('meta') }
}

export function newId (prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(5))
  return prefix + '-' + Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
}

/** Plain values of a node map (params as a plain object, whether Y.Map or not). */
export function readNode (ynode) {
  if (!(ynode instanceof Y.Map)) return null
  const params = ynode.get('params')
  return {
    type: String(ynode.get('type') ?? '?'),
    x: Number(ynode.get('x')) || 0,
    y: Number(ynode.get('y')) || 0,
    label: ynode.get('label') ?? null,
    params: params instanceof Y.Map ? params.toJSON() : (params && typeof params === 'object' ? { ...params } : {}),
  }
}

export function readEdge (yedge) {
  if (!(yedge instanceof Y.Map)) return null
  return {
    source: String(yedge.get('source') ?? ''),
    sourceSocket: String(yedge.get('sourceSocket') ?? 'out'),
    target: String(yedge.get('target') ?? ''),
    targetSocket: String(yedge.get('targetSocket') ?? 'in'),
  }
}

export function addNode (doc, type, x, y) {
  const id = newId('n')
  doc.transact(() => {
    const node = new Y.Map()
    const params = new Y.Map()
    for (const [k, v] of Object.entries(typeInfo(type).params)) params.set(k, v)
    node.set('type', type)
    node.set('x', Math.round(x))
    node.set('y', Math.round(y))
    node.set('params', params)
    roots(doc).nodes.set(id, node)
  }, LOCAL)
  return id
}

export function moveNode (doc, id, x, y) {
  const node = roots(doc).nodes.get(id)
  if (!(node instanceof Y.Map)) return
  doc.transact(() => {
    node.set('x', Math.round(x))
    node.set('y', Math.round(y))
  }, LOCAL)
}

/** Delete a node and every edge touching it, in one transaction. */
export function deleteNode (doc, id) {
  const { nodes, edges } = roots(doc)
  doc.transact(() => {
    nodes.delete(id)
    for (const [edgeId, e] of edges.entries()) {
      const edge = readEdge(e)
      if (!edge || edge.source === id || edge.target === id) edges.delete(edgeId)
    }
  }, LOCAL)
}

export function setLabel (doc, id, label) {
  const node = roots(doc).nodes.get(id)
  if (!(node instanceof Y.Map)) return
  doc.transact(() => {
    if (label) node.set('label', label)
    else node.delete('label')
  }, LOCAL)
}

export function setParam (doc, id, key, value) {
  const node = roots(doc).nodes.get(id)
  if (!(node instanceof Y.Map)) return
  doc.transact(() => {
    let params = node.get('params')
    if (!(params instanceof Y.Map)) {
      // Written as a plain object by some client: upgrade it, keeping its values.
      const old = params && typeof params === 'object' ? params : {}
      params = new Y.Map()
      for (const [k, v] of Object.entries(old)) params.set(k, v)
      node.set('params', params)
    }
    if (value === undefined) params.delete(key)
    else params.set(key, value)
  }, LOCAL)
}

/**
 * Connect an output socket to an input socket. An input takes one edge: an edge already
 * plugged into it is replaced in the same transaction. Returns the edge id (or null).
 */
export function connect (doc, source, sourceSocket, target, targetSocket) {
  if (source === target) return null
  const { edges } = roots(doc)
  const id = newId('e')
  doc.transact(() => {
    for (const [edgeId, e] of edges.entries()) {
      const edge = readEdge(e)
      if (edge && edge.target === target && edge.targetSocket === targetSocket) edges.delete(edgeId)
    }
    const edge = new Y.Map()
    edge.set('source', source)
    edge.set('sourceSocket', sourceSocket)
    edge.set('target', target)
    edge.set('targetSocket', targetSocket)
    edges.set(id, edge)
  }, LOCAL)
  return id
}

export function deleteEdge (doc, id) {
  doc.transact(() => roots(doc).edges.delete(id), LOCAL)
}
